#!/usr/bin/env bash
# prunequant report rendered by headless Chromium: the three charts exist in the DOM with
# their marks (points, Pareto line, bars), and a screenshot is produced. Needs the Debian
# package 'chromium'; without it this test FAILS (it never skips silently).
set -u
BIN=${PQ_BIN:?PQ_BIN not set}
CHROME=${PQ_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROME" ]; then
    echo "FAIL: $CHROME not found: install the Debian package 'chromium' (apt-get install chromium)" \
         "or set PQ_CHROMIUM to a Chromium binary" >&2
    exit 1
fi
if ! "$BIN" report --help > /dev/null 2>&1; then
    echo "FAIL: '$BIN report' is not a command (cli/main.c must dispatch sweep/recommend/report)" >&2
    exit 1
fi
command -v python3 > /dev/null || { echo "FAIL: python3 is needed to fill the database" >&2; exit 1; }
. "$(dirname "$0")/lib.sh"

# a hand-filled database (the schema of src/sweep/sweep_store.c)
python3 - "$T/db.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("""
CREATE TABLE runs(config_hash TEXT PRIMARY KEY, recipe TEXT, status TEXT, sparsity REAL, bits REAL, tcr REAL,
  acr REAL, bpw REAL, bytes INTEGER, sr REAL, srcr REAL, seconds REAL, error TEXT, updated TEXT);
CREATE TABLE scores(config_hash TEXT, task TEXT, metric TEXT, score REAL, stderr REAL, base_score REAL,
  retention REAL, PRIMARY KEY(config_hash, task));
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
""")
runs = [("base", "{}", "done", 0, 16, 0, 0, 16, 0, 1, 1),
        ("q3", '{"prune":"none","quant":"gptq","bits":3}', "done", 0, 3, 0.8125, 0.79, 3.3, 1100, 0.70, 1.77),
        ("j25", '{"prune":"sparsegpt","sparsity":0.25,"quant":"gptq","bits":4}', "done", 0.25, 4, 0.8125, 0.78,
         3.5, 1150, 0.84, 1.94),
        ("q4", '{"prune":"none","quant":"gptq","bits":4}', "done", 0, 4, 0.75, 0.73, 4.3, 1400, 0.95, 1.90),
        ("s50", '{"prune":"sparsegpt","sparsity":0.5,"quant":"none"}', "done", 0.5, 16, 0.5, 0.4, 9.6, 3000, 0.9,
         1.27)]
for r in runs:
    c.execute("INSERT INTO runs VALUES(?,?,?,?,?,?,?,?,?,?,?,1.0,NULL,NULL)", r)
    c.execute("INSERT INTO scores VALUES(?, 'arc_easy', 'acc', ?, 0.02, 0.5, ?)", (r[0], 0.5 * r[9], r[9]))
c.execute("INSERT INTO meta VALUES('model', 'stories260K.bin'), ('tasks', 'arc_easy')")
c.commit()
PY
"$BIN" report --db "$T/db.sqlite" --out "$T/report.html" 2> /dev/null && ok || bad "report"
F=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$T/profile")
timeout 60 "$CHROME" "${F[@]}" --dump-dom "file://$T/report.html" > "$T/dom.html" 2> "$T/chrome.err"
[ -s "$T/dom.html" ] && ok || { bad "chromium produced no DOM"; tail -5 "$T/chrome.err" >&2; }
python3 - "$T/dom.html" <<'PY' && ok || bad "rendered DOM lacks the charts or their marks"
import re, sys
d = open(sys.argv[1]).read()
for i in ("sr-vs-tcr", "iso-tcr", "srcr-ranking"):
    assert re.search(r'<svg[^>]*id="%s"' % i, d), i
scatter = d[d.index('id="sr-vs-tcr"'):]
scatter = scatter[:scatter.index("</svg>")]
assert scatter.count("<circle") == 4, scatter.count("<circle")
assert 'id="pareto"' in scatter
iso = d[d.index('id="iso-tcr"'):]
iso = iso[:iso.index("</svg>")]
assert 'class="bar joint"' in iso and 'class="bar quant"' in iso
rank = d[d.index('id="srcr-ranking"'):]
assert rank[:rank.index("</svg>")].count("<rect") == 4
PY
timeout 60 "$CHROME" "${F[@]}" --screenshot="$T/shot.png" --window-size=1200,2000 "file://$T/report.html" \
    > /dev/null 2>&1
[ -s "$T/shot.png" ] && ok || bad "no screenshot"
# non-blank: decode the PNG (zlib + scanline filters) and count the pixels that are not background
python3 - "$T/shot.png" <<'PY' && ok || bad "the screenshot is blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, typ = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if typ == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif typ == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
counts = {}
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    prev = line
    if y % 4 == 0:
        for x in range(0, w, 4):
            px = bytes(line[x * bpp:x * bpp + 3])
            counts[px] = counts.get(px, 0) + 1
total = sum(counts.values())
background = max(counts.values())
ink = total - background
print(f"screenshot {w}x{h}: {len(counts)} colours, {100 * ink / total:.1f}% of the sampled pixels are not background")
assert len(counts) > 20 and ink > 0.02 * total, (len(counts), ink, total)
PY
# a real sweep (per-item results stored): the rendered report has an interval on every Sr
# point and iso-TCr bar, the iso-TCr / iso-bpw lines with their verdicts, both scatter plots with
# axis labels, and legends that name only the kinds present
DATA=${PQ_DATA:?PQ_DATA not set}
TEXT=$DATA/text/tinystories/tinystories_val.txt
head -c 150000 "$TEXT" > "$T/calib.txt"
tail -c 80000 "$TEXT" > "$T/eval.txt"
echo '{"prune": ["none", "sparsegpt"], "sparsity": [0.25], "quant": ["gptq"], "bits": [3, 4]}' > "$T/grid.json"
"$BIN" sweep "$DATA/models/stories260K/stories260K.bin" --grid "$T/grid.json" --calib "$T/calib.txt" --tcr 0.8125 \
    --tasks "ppl:$T/eval.txt" --limit 60 --nsamples 4 --seqlen 64 --db "$T/real.sqlite" --quiet 2> "$T/sweep.err" &&
    "$BIN" report --db "$T/real.sqlite" --out "$T/real.html" 2> /dev/null && ok || bad "real sweep + report: $(tail -2 "$T/sweep.err")"
timeout 60 "$CHROME" "${F[@]}" --dump-dom "file://$T/real.html" > "$T/real_dom.html" 2> "$T/chrome.err"
python3 - "$T/real_dom.html" <<'PY' && ok || bad "rendered real report lacks intervals, axis labels or legends"
import re, sys
d = open(sys.argv[1]).read()
def svg(i):
    s = d[d.index('id="%s"' % i):]
    return s[:s.index("</svg>")]
for i in ("sr-vs-tcr", "sr-vs-bpw"):
    s = svg(i)
    assert s.count("<circle") == 2 and s.count('class="errbar"') == 2, (i, s.count("<circle"), s.count("errbar"))
    assert ">Sr (mean retention)</text>" in s, i
assert ">TCr</text>" in svg("sr-vs-tcr") and ">stored bits per weight" in svg("sr-vs-bpw")
iso = svg("iso-tcr")
assert iso.count('class="bar ') == 2 and iso.count('class="errbar"') == 2 and ">best Sr of each kind</text>" in iso
assert re.search(r'class="key joint"', d) and re.search(r'class="key quant"', d) and 'class="key prune"' not in d
lines = d[d.index('id="iso-tcr-lines"'):]
lines = lines[:lines.index("</ul>")]
assert re.search(r"joint wins by [0-9.]+% \[|not distinguishable|quantization wins by [0-9.]+% \[", lines), lines
assert 'id="iso-bpw"' in d and "paired bootstrap" in d
PY
echo "cli_report_render: $pass passed, $fail failed"
[ $fail -eq 0 ]
