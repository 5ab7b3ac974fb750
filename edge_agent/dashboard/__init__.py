"""`edge-agent dashboard`: a live web page of one device or a fleet, fed only by MQTT.

`fleet` turns the devices' messages into a model and its deltas, `server` serves the page
in `static/` and streams the deltas to it (Server-Sent Events). The chart library, uPlot, is
vendored in `static/uplot/` with its licence, so the page works with no network beyond the
broker and the browser.
"""
