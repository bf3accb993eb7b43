#!/usr/bin/env python3
"""Makes the loader's sample PDFs and test fixtures. Deterministic: running it twice gives the
same bytes.

    python3 tools/gen_loader_fixtures.py pdfs       # assets/*.pdf and tests/fixtures/loader/broken/
                                                    # (plain Python; qpdf for the encrypted one)
    python3 tools/gen_loader_fixtures.py reference  # reference values (needs the Python reference env)

The reference part was run with: transformers 5.24.0, torch 2.13.0, torchvision 0.28.0,
pypdfium2 5.15.2 (PDFium 8149), Pillow 13.0.0 (the env colpali-engine 0.3.18 pulls in).

Outputs
- assets/*.pdf: small PDFs about distinct research topics (text, a table, drawn figures),
  written by hand with the standard Helvetica fonts.
- tests/fixtures/loader/broken/*.pdf: empty, not a PDF, truncated, encrypted, zero pages,
  a page too elongated for the model, a huge page box.
- tests/fixtures/loader/smart_resize.json: (h, w, factor, min, max) -> (h', w') or error, by the
  reference `smart_resize`.
- tests/fixtures/loader/patchify/: a 56x84 image that needs no resize and the reference
  processor's pixel_values for it (raw little-endian f32).
- tests/fixtures/loader/pages/: for a few sample pages, the render size and a CRC-32 of the page
  rendered by PDFium (raw API, the same flags as our renderer), and the reference processor's
  pixel_values for that render, stored losslessly as the 8-bit codes they were computed from
  (a grayscale PNG of patches x 1176; the script checks the codes reproduce pixel_values
  bit for bit) plus the normalisation table of the reference.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets", "samples")
FIX = os.path.join(ROOT, "tests", "fixtures", "loader")
BROKEN = os.path.join(FIX, "broken")

A4 = (595, 842)
DPI = 144.0  # LoaderSettings::default().dpi
MIN_PIXELS = 3136
MAX_PIXELS = 768 * 28 * 28

# ----------------------------------------------------------------------------------------------
# A tiny PDF writer (uncompressed content streams, standard 14 fonts, no dates: deterministic).
# ----------------------------------------------------------------------------------------------


def pdf_escape(s):
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


class Page:
    def __init__(self, size=A4):
        self.size = size
        self.ops = []

    def text(self, x, y, s, size=11, font="F1"):
        self.ops.append(f"BT /{font} {size} Tf {x} {y} Td ({pdf_escape(s)}) Tj ET")

    def paragraph(self, x, y, s, size=11, width_chars=88, leading=15):
        """Wraps `s` at `width_chars` characters; returns the y below the paragraph."""
        line = ""
        for word in s.split():
            if line and len(line) + 1 + len(word) > width_chars:
                self.text(x, y, line, size)
                y -= leading
                line = word
            else:
                line = f"{line} {word}" if line else word
        if line:
            self.text(x, y, line, size)
            y -= leading
        return y - 6

    def rect(self, x, y, w, h, rgb=None, stroke=False):
        if rgb:
            self.ops.append(f"{rgb[0]} {rgb[1]} {rgb[2]} rg")
        self.ops.append(f"{x} {y} {w} {h} re {'S' if stroke else 'f'}")
        self.ops.append("0 0 0 rg")

    def line(self, points, width=1, rgb=(0, 0, 0)):
        self.ops.append(f"{width} w {rgb[0]} {rgb[1]} {rgb[2]} RG")
        (x0, y0), rest = points[0], points[1:]
        self.ops.append(f"{x0} {y0} m " + " ".join(f"{x} {y} l" for x, y in rest) + " S")
        self.ops.append("0 0 0 RG 1 w")

    def content(self):
        return "\n".join(self.ops).encode("latin-1")


def write_pdf(path, pages, extra_objects_last=True):
    """Objects: fonts, then each page's content and page object, then the page tree and the
    catalog last (so a file cut short loses its root, as truncated downloads do)."""
    objs = {}
    n = len(pages)
    # numbering: 1 F1, 2 F2, then (content, page) per page, then pages, catalog
    objs[1] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    objs[2] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
    pages_id = 3 + 2 * n
    catalog_id = pages_id + 1
    kids = []
    for i, p in enumerate(pages):
        cid, pid = 3 + 2 * i, 4 + 2 * i
        data = p.content()
        objs[cid] = b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
        w, h = p.size
        objs[pid] = (
            f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {w} {h}] "
            f"/Resources << /Font << /F1 1 0 R /F2 2 0 R >> >> /Contents {cid} 0 R >>"
        ).encode()
        kids.append(f"{pid} 0 R")
    objs[pages_id] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {n} >>".encode()
    objs[catalog_id] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for oid in sorted(objs):
        offsets[oid] = len(out)
        out += b"%d 0 obj\n" % oid + objs[oid] + b"\nendobj\n"
    xref = len(out)
    count = max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for oid in range(1, count):
        out += b"%010d 00000 n \n" % offsets[oid]
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, catalog_id, xref)
    with open(path, "wb") as f:
        f.write(bytes(out))
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Sample documents: four short papers on unrelated topics, so text search over them means
# something (each has words the others lack).
# ----------------------------------------------------------------------------------------------


def title_block(p, title, authors):
    p.text(72, 780, title, 17, "F2")
    p.text(72, 758, authors, 10)
    return 730


def doc_coral():
    p1 = Page()
    y = title_block(p1, "Marine Heatwaves and Coral Reef Bleaching", "R. Okafor, L. Brandt - Reef Ecology Notes 12")
    p1.text(72, y, "Abstract", 12, "F2")
    y = p1.paragraph(72, y - 18, (
        "Coral bleaching happens when reef-building corals expel the symbiotic algae "
        "(zooxanthellae, family Symbiodiniaceae) that live in their tissue and supply most of "
        "their energy. Sustained sea surface temperature anomalies of one degree Celsius above the "
        "summer maximum are enough to trigger it. We surveyed eleven sites on a fringing reef "
        "during the 2024 marine heatwave and relate bleaching to degree heating weeks (DHW), "
        "depth and turbidity."))
    p1.text(72, y, "1 Introduction", 12, "F2")
    y = p1.paragraph(72, y - 18, (
        "Mass bleaching events have become more frequent since the 1980s. Branching Acropora "
        "colonies bleach first, while massive Porites colonies often survive. Shaded and turbid "
        "water can protect corals by reducing light stress, which is why depth alone predicts "
        "bleaching poorly. Recovery takes a decade or more when herbivorous fish keep macroalgae "
        "in check."))
    p2 = Page()
    p2.text(72, 780, "2 Survey results", 12, "F2")
    y = p2.paragraph(72, 760, (
        "Table 1 lists the share of bleached colonies per site together with the peak sea "
        "surface temperature anomaly and the accumulated degree heating weeks."))
    # Table 1 with ruled lines.
    cols = [72, 190, 280, 390, 523]
    heads = ["Site", "Depth (m)", "Bleached (%)", "Peak DHW"]
    rows = [
        ["North lagoon", "2", "81", "9.4"], ["Channel mouth", "6", "47", "7.1"],
        ["Outer slope", "14", "22", "6.8"], ["Turbid bay", "3", "18", "8.9"],
        ["Seagrass edge", "1", "66", "9.9"], ["South crest", "5", "54", "8.2"],
    ]
    top = y - 10
    p2.text(72, top + 8, "Table 1: Bleaching survey by site (March 2024)", 10, "F2")
    row_h = 20
    for r in range(len(rows) + 2):
        p2.line([(cols[0], top - r * row_h), (cols[-1], top - r * row_h)], 0.6)
    for c in cols:
        p2.line([(c, top), (c, top - (len(rows) + 1) * row_h)], 0.6)
    for i, h in enumerate(heads):
        p2.text(cols[i] + 6, top - 14, h, 10, "F2")
    for r, row in enumerate(rows):
        for i, v in enumerate(row):
            p2.text(cols[i] + 6, top - (r + 1) * row_h - 14, v, 10)
    y = top - (len(rows) + 1) * row_h - 30
    y = p2.paragraph(72, y, (
        "Bleaching rose with degree heating weeks except in the turbid bay, where suspended "
        "sediment shaded the colonies. The outer slope, fourteen metres deep, bleached least."))
    p3 = Page()
    p3.text(72, 780, "3 Discussion", 12, "F2")
    y = p3.paragraph(72, 760, (
        "Our results support using turbidity and depth refugia in reef management. Protecting "
        "parrotfish and surgeonfish populations helps reefs recover after bleaching because "
        "grazing keeps space free for coral larvae to settle. Assisted evolution, such as "
        "breeding heat-tolerant corals, remains experimental."))
    p3.text(72, y, "References", 12, "F2")
    p3.paragraph(72, y - 18, (
        "[1] Hughes et al., Global warming and recurrent mass bleaching of corals, Nature 2017. "
        "[2] Skirving et al., Coral Reef Watch degree heating weeks, 2020."))
    return [p1, p2, p3]


def doc_attention():
    p1 = Page()
    y = title_block(p1, "Block-Sparse Attention for Long-Document Transformers", "M. Ishikawa, T. Varga - Workshop on Efficient Sequence Models")
    p1.text(72, y, "Abstract", 12, "F2")
    y = p1.paragraph(72, y - 18, (
        "Self-attention costs time and memory quadratic in the sequence length, which limits "
        "transformers on long documents. We evaluate block-sparse attention patterns that combine "
        "a sliding window, a few global tokens and random blocks. On sequences of 16384 tokens "
        "the sparse kernel runs 5.8 times faster than dense FlashAttention while keeping "
        "perplexity within 0.3 points."))
    p1.text(72, y, "1 Method", 12, "F2")
    p1.paragraph(72, y - 18, (
        "Queries and keys are grouped into blocks of 64 tokens. Each query block attends to its "
        "neighbouring key blocks, to the global blocks and to three random blocks chosen per "
        "layer. The softmax is computed blockwise with an online rescaling of the running "
        "maximum, so no attention matrix is ever materialised."))
    p2 = Page()
    p2.text(72, 780, "2 Speedup", 12, "F2")
    p2.paragraph(72, 760, (
        "Figure 1 shows the speedup of the block-sparse kernel over dense attention for growing "
        "sequence length, measured on one GPU with batch size 8 and head dimension 128."))
    # Figure 1: bar chart.
    x0, y0 = 110, 430
    p2.line([(x0, y0), (x0 + 380, y0)], 1)
    p2.line([(x0, y0), (x0, y0 + 260)], 1)
    bars = [("1k", 1.1), ("2k", 1.6), ("4k", 2.4), ("8k", 3.9), ("16k", 5.8)]
    for i, (lab, v) in enumerate(bars):
        bx = x0 + 25 + i * 72
        p2.rect(bx, y0, 40, v * 40, rgb=(0.18, 0.42, 0.75))
        p2.text(bx + 10, y0 - 16, lab, 10)
        p2.text(bx + 6, y0 + v * 40 + 6, f"{v}x", 9)
    for t in range(0, 7):
        p2.line([(x0 - 4, y0 + t * 40), (x0, y0 + t * 40)], 1)
        p2.text(x0 - 20, y0 + t * 40 - 3, str(t), 9)
    p2.line([(x0, y0 + 40), (x0 + 380, y0 + 40)], 0.5, rgb=(0.85, 0.2, 0.2))
    p2.text(x0 + 120, y0 - 36, "Figure 1: Speedup over dense attention vs sequence length", 10, "F2")
    p2.paragraph(72, 330, (
        "The red line marks parity. Below two thousand tokens the sparse kernel barely helps, "
        "because the block bookkeeping costs about as much as the saved work."))
    return [p1, p2]


def doc_hanse():
    p1 = Page()
    y = title_block(p1, "Salt, Cod and Cloth: Trade Routes of the Hanseatic League", "A. Lindqvist - Seminar in Medieval Economic History")
    y = p1.paragraph(72, y, (
        "Between the thirteenth and the fifteenth century the Hanseatic League linked the "
        "merchants of Luebeck, Hamburg, Bruges, Bergen and Novgorod. Lueneburg salt travelled "
        "north to preserve herring from the Scania market, stockfish (dried cod) came south from "
        "Bergen, and Flemish cloth went east in exchange for furs, wax and grain."))
    p1.text(72, y, "1 The kontors", 12, "F2")
    p1.paragraph(72, y - 18, (
        "The League kept four foreign offices, the kontors: the Peterhof in Novgorod, the Steelyard "
        "in London, the Bryggen wharf in Bergen and the office in Bruges. Merchants lived there "
        "under their own statutes, which protected privileges that local rulers had granted."))
    p2 = Page()
    p2.text(72, 780, "2 Decline", 12, "F2")
    y = p2.paragraph(72, 760, (
        "Dutch shippers with larger fluyt vessels, the closing of the Novgorod kontor in 1494 and "
        "the shift of trade towards the Atlantic weakened the League. The last diet met in 1669."))
    # A simple map-like figure: route polyline between labelled towns.
    towns = [("Bergen", 140, 520), ("Luebeck", 300, 400), ("Novgorod", 480, 470), ("Bruges", 150, 330), ("London", 90, 380)]
    p2.line([(140, 520), (300, 400), (480, 470)], 1.5, rgb=(0.1, 0.5, 0.3))
    p2.line([(90, 380), (150, 330), (300, 400)], 1.5, rgb=(0.6, 0.3, 0.1))
    for name, x, yy in towns:
        p2.rect(x - 3, yy - 3, 6, 6, rgb=(0.1, 0.1, 0.1))
        p2.text(x + 6, yy + 4, name, 10)
    p2.text(150, 290, "Figure 1: Main Hanseatic routes (schematic)", 10, "F2")
    return [p1, p2]


def doc_graphene():
    p1 = Page()
    y = title_block(p1, "Thermal Conductivity of Suspended Graphene by Raman Thermometry", "J. Mbeki, S. Carvalho - Nanoscale Heat Transport Letters")
    y = p1.paragraph(72, y, (
        "Suspended single-layer graphene conducts heat better than any bulk material. We measure "
        "its thermal conductivity with the optothermal Raman method: a laser heats the centre of "
        "a membrane spanning a circular hole, and the shift of the G peak near 1580 per cm gives "
        "the local temperature. Phonons, not electrons, carry the heat."))
    p1.text(72, y, "1 Results", 12, "F2")
    y = p1.paragraph(72, y - 18, (
        "Conductivity falls from about 4100 to 2300 W/mK between 300 and 500 kelvin, because "
        "umklapp scattering of flexural phonons grows with temperature. Figure 1 plots the data."))
    # Figure: line plot.
    x0, y0 = 120, 300
    p1.line([(x0, y0), (x0 + 340, y0)], 1)
    p1.line([(x0, y0), (x0, y0 + 200)], 1)
    pts = [(300, 4100), (350, 3600), (400, 3150), (450, 2700), (500, 2300)]
    xy = [(x0 + (t - 300) * 1.6 + 10, y0 + (k - 2000) / 12) for t, k in pts]
    p1.line(xy, 1.5, rgb=(0.75, 0.15, 0.15))
    for x, yy in xy:
        p1.rect(x - 2.5, yy - 2.5, 5, 5, rgb=(0.75, 0.15, 0.15))
    p1.text(x0 + 110, y0 - 20, "Temperature (K)", 10)
    p1.text(x0 - 40, y0 + 210, "k (W/mK)", 10)
    p1.text(x0 + 40, y0 - 40, "Figure 1: Thermal conductivity of suspended graphene", 10, "F2")
    return [p1]


SAMPLES = {
    "coral-reef-bleaching.pdf": doc_coral,
    "sparse-attention-transformers.pdf": doc_attention,
    "hanseatic-trade-routes.pdf": doc_hanse,
    "graphene-thermal-conductivity.pdf": doc_graphene,
}


def make_pdfs():
    os.makedirs(ASSETS, exist_ok=True)
    os.makedirs(BROKEN, exist_ok=True)
    data = {}
    for name, make in SAMPLES.items():
        data[name] = write_pdf(os.path.join(ASSETS, name), make())
    # Broken inputs, one per failure kind.
    open(os.path.join(BROKEN, "empty.pdf"), "wb").close()
    with open(os.path.join(BROKEN, "not-a-pdf.pdf"), "wb") as f:
        f.write(b"This is a plain text file that only has a .pdf name.\n" * 20)
    src = data["coral-reef-bleaching.pdf"]
    with open(os.path.join(BROKEN, "truncated.pdf"), "wb") as f:
        f.write(src[: len(src) * 2 // 3])  # cut before the page tree and the catalog
    write_pdf(os.path.join(BROKEN, "zero-pages.pdf"), [])
    banner = Page(size=(14400, 40))
    banner.text(20, 15, "A banner page far too elongated for the model (aspect ratio 360).", 11)
    write_pdf(os.path.join(BROKEN, "banner.pdf"), [banner])
    huge = Page(size=(14400, 14400))
    huge.text(100, 14000, "A huge page box (200 x 200 inches): rendered at reduced resolution.", 200)
    write_pdf(os.path.join(BROKEN, "huge-page.pdf"), [huge])
    enc = os.path.join(BROKEN, "encrypted.pdf")
    if shutil.which("qpdf"):
        # AES-128 (R4) with a static id and IV is deterministic; qpdf offers these flags for testing.
        subprocess.run(["qpdf", "--static-id", "--static-aes-iv", "--encrypt", "secret-user", "secret-owner", "128", "--use-aes=y", "--",
                        os.path.join(ASSETS, "graphene-thermal-conductivity.pdf"), enc], check=True)
    else:
        print("qpdf not found: keeping the committed encrypted.pdf", file=sys.stderr)
    for name in sorted(os.listdir(ASSETS)):
        print(f"assets/samples/{name}: {os.path.getsize(os.path.join(ASSETS, name))} bytes")


# ----------------------------------------------------------------------------------------------
# Reference values.
# ----------------------------------------------------------------------------------------------


def smart_resize_cases():
    cases = []
    sizes = [1, 5, 13, 14, 15, 27, 28, 29, 41, 42, 43, 55, 56, 70, 98, 100, 126, 154, 224, 252, 500,
             644, 842, 896, 1190, 1191, 1684, 2000, 3000, 4000, 5600, 5601]
    for h in sizes:
        for w in sizes:
            cases.append((h, w, 28, MIN_PIXELS, MAX_PIXELS))
    # Page renders: A4 and Letter in both orientations at common DPIs.
    for pw, ph in [(595, 842), (612, 792), (842, 595), (792, 612)]:
        for dpi in [72, 96, 100, 144, 150, 200, 300]:
            cases.append((round(ph * dpi / 72), round(pw * dpi / 72), 28, MIN_PIXELS, MAX_PIXELS))
    # Ties: h/28 exactly k + 0.5, plus the aspect-ratio limit around 200.
    for k in range(1, 40):
        cases.append((28 * k + 14, 28 * (k + 3) + 14, 28, MIN_PIXELS, MAX_PIXELS))
    cases += [(10, 2000, 28, MIN_PIXELS, MAX_PIXELS), (10, 2001, 28, MIN_PIXELS, MAX_PIXELS),
              (2000, 10, 28, MIN_PIXELS, MAX_PIXELS), (7, 1400, 28, MIN_PIXELS, MAX_PIXELS),
              (1, 200, 28, MIN_PIXELS, MAX_PIXELS), (1, 201, 28, MIN_PIXELS, MAX_PIXELS),
              (40, 14400 * 2, 28, MIN_PIXELS, MAX_PIXELS)]
    # Other limits: the processor's own default, small token budgets.
    rng = random.Random(1234)
    for mx in [28 * 28 * 1280, 64 * 784, 256 * 784, 1024 * 784]:
        for _ in range(40):
            cases.append((rng.randint(1, 6000), rng.randint(1, 6000), 28, MIN_PIXELS, mx))
    for _ in range(200):
        cases.append((rng.randint(1, 9000), rng.randint(1, 9000), 28, MIN_PIXELS, MAX_PIXELS))
    return cases


def gen_smart_resize():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    rows = []
    for h, w, f, mn, mx in smart_resize_cases():
        try:
            rh, rw = smart_resize(h, w, factor=f, min_pixels=mn, max_pixels=mx)
            rows.append([h, w, f, mn, mx, int(rh), int(rw)])
        except ValueError:
            rows.append([h, w, f, mn, mx, None, None])  # refused (aspect ratio > 200)
    with open(os.path.join(FIX, "smart_resize.json"), "w") as f:
        f.write('{"columns": ["h", "w", "factor", "min_pixels", "max_pixels", "out_h", "out_w"],\n"cases": [\n')
        f.write(",\n".join(json.dumps(r) for r in rows))
        f.write("\n]}\n")
    print(f"smart_resize.json: {len(rows)} cases, {sum(r[5] is None for r in rows)} refused")


def image_processor():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def gen_patchify():
    import numpy as np
    from PIL import Image

    out = os.path.join(FIX, "patchify")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    h, w = 56, 84  # multiples of 28, area 4704 within [min, max]: smart_resize keeps it
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    res = image_processor()(images=[Image.fromarray(img)], return_tensors="pt")
    pv = res["pixel_values"].numpy().astype("<f4")
    grid = res["image_grid_thw"].tolist()[0]
    assert grid == [1, h // 14, w // 14], grid
    with open(os.path.join(out, "image.rgb"), "wb") as f:
        f.write(img.tobytes())
    with open(os.path.join(out, "pixel_values.f32"), "wb") as f:
        f.write(pv.tobytes())
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"height": h, "width": w, "grid_thw": grid, "shape": list(pv.shape)}, f)
    print(f"patchify: {pv.shape}")


def render_like_pagesight(path, index):
    """Renders as src/loader/pdfium.rs does: size = round(points * dpi / 72), BGRA bitmap filled
    white, FPDF_RenderPageBitmap with FPDF_ANNOT only; returns an HxWx3 RGB array."""
    import ctypes

    import numpy as np
    import pypdfium2 as pdfium
    import pypdfium2.raw as c

    doc = pdfium.PdfDocument(path)
    page = doc[index]
    wpt, hpt = page.get_size()
    w, h = round(wpt * DPI / 72.0), round(hpt * DPI / 72.0)
    bitmap = c.FPDFBitmap_CreateEx(w, h, c.FPDFBitmap_BGRA, None, 0)
    c.FPDFBitmap_FillRect(bitmap, 0, 0, w, h, 0xFFFFFFFF)
    c.FPDF_RenderPageBitmap(bitmap, page, 0, 0, w, h, 0, c.FPDF_ANNOT)
    stride = c.FPDFBitmap_GetStride(bitmap)
    buf = ctypes.cast(c.FPDFBitmap_GetBuffer(bitmap), ctypes.POINTER(ctypes.c_ubyte * (stride * h))).contents
    arr = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(h, stride)[:, : w * 4].reshape(h, w, 4)
    c.FPDFBitmap_Destroy(bitmap)
    page.close()
    doc.close()
    return np.ascontiguousarray(arr[:, :, [2, 1, 0]])


PIXEL_PAGES = [("coral-reef-bleaching.pdf", 1), ("sparse-attention-transformers.pdf", 1), ("graphene-thermal-conductivity.pdf", 0)]


def gen_pages():
    import numpy as np
    import torch
    from PIL import Image

    out = os.path.join(FIX, "pages")
    os.makedirs(out, exist_ok=True)
    proc = image_processor()
    # The reference's normalisation of every byte value (fused rescale + normalise in f32).
    probe = torch.arange(256, dtype=torch.uint8).repeat(3, 1).reshape(3, 1, 256)
    table = proc.rescale_and_normalize(probe.unsqueeze(0), True, proc.rescale_factor, True, proc.image_mean, proc.image_std)[0, :, 0, :]
    table = table.numpy().astype("<f4")
    entries = []
    for name, index in PIXEL_PAGES:
        rgb = render_like_pagesight(os.path.join(ASSETS, name), index)
        res = proc(images=[Image.fromarray(rgb)], return_tensors="pt")
        pv = res["pixel_values"].numpy().astype("<f4")
        grid = res["image_grid_thw"].tolist()[0]
        # Recover the 8-bit code of every value and check it reproduces pixel_values exactly.
        chan = np.repeat(np.arange(3), pv.shape[1] // 3)
        mean = np.array(proc.image_mean, dtype=np.float64)[chan] * 255.0
        std = np.array(proc.image_std, dtype=np.float64)[chan] * 255.0
        codes = np.clip(np.rint(pv * std + mean), 0, 255).astype(np.uint8)
        recon = table[chan[None, :], codes]
        assert np.array_equal(recon.view(np.uint32), pv.view(np.uint32)), "pixel_values are not 8-bit codes"
        stem = f"{os.path.splitext(name)[0]}-p{index + 1}"
        Image.fromarray(codes, mode="L").save(os.path.join(out, stem + ".codes.png"), optimize=True)
        entries.append({
            "pdf": f"assets/samples/{name}", "page": index + 1, "dpi": DPI,
            "render_width": int(rgb.shape[1]), "render_height": int(rgb.shape[0]),
            "render_crc32": zlib.crc32(rgb.tobytes()),
            "grid_thw": grid, "patches": int(pv.shape[0]), "codes_png": f"pages/{stem}.codes.png",
        })
        print(f"{stem}: render {rgb.shape[1]}x{rgb.shape[0]} grid {grid}")
    with open(os.path.join(out, "pages.json"), "w") as f:
        json.dump({"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
                   "normalise_table": [[float(v) for v in row] for row in table], "pages": entries}, f, indent=1)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("pdfs", "all"):
        make_pdfs()
    if what in ("reference", "all"):
        os.makedirs(FIX, exist_ok=True)
        gen_smart_resize()
        gen_patchify()
        gen_pages()


if __name__ == "__main__":
    main()
