"""The Loom Console: browser pages served by Loom itself at `/console`.

Static HTML and one small vanilla JS module per page, shipped as package data: no build
step, no CDN, no request to any host but Loom. The pages hold no data of their own; each
script reads the public `/v1` API with the key the user typed, so the console can never
show what that key may not see.
"""
