"""Turns world-atlas's countries-110m.json (TopoJSON; npm package world-atlas@2, ISC,
data from Natural Earth, public domain) into web/static/vendor/world-110m.json: for each
country its name and rings of [longitude, latitude], rounded to 0.01 degree. casebook's
storyboard map draws it on a canvas, so analysts' maps need no tiles from the internet.

    npm pack world-atlas@2 && tar xzf world-atlas-2.0.2.tgz
    python3 scripts/vendor-world.py package/countries-110m.json
"""
import json
import sys
from pathlib import Path

topo = json.loads(Path(sys.argv[1]).read_text())
scale, translate = topo["transform"]["scale"], topo["transform"]["translate"]


def decode(arc):
    x = y = 0
    out = []
    for dx, dy in arc:
        x += dx
        y += dy
        out.append([round(x * scale[0] + translate[0], 2), round(y * scale[1] + translate[1], 2)])
    return out


arcs = [decode(a) for a in topo["arcs"]]


def ring(indexes):
    points = []
    for i in indexes:
        a = arcs[i] if i >= 0 else list(reversed(arcs[~i]))
        points.extend(a if not points else a[1:])
    return points


countries = []
for g in topo["objects"]["countries"]["geometries"]:
    polys = g.get("arcs", [])
    if g["type"] == "Polygon":
        polys = [polys]
    rings = [ring(r) for p in polys for r in p]
    countries.append({"name": g.get("properties", {}).get("name", ""), "rings": rings})

out = Path(__file__).resolve().parent.parent / "web/static/vendor/world-110m.json"
out.write_text(json.dumps({"source": "world-atlas 2.0.2 countries-110m (Natural Earth)", "countries": countries}, separators=(",", ":")))
print(out, out.stat().st_size, "bytes,", len(countries), "countries")
