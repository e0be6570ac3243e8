"""Text from ../shared/data that more than one benchmark reads."""

from __future__ import annotations

import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def wikitext_paragraphs() -> list[str]:
    """WikiText-2 valid+test as paragraphs (headings dropped), its tokenization spaces (" @-@ ", " , ") undone;
    its `<unk>` tokens stay."""
    paragraphs = []
    for name in ("valid.txt", "test.txt"):
        for line in (DATA / "wikitext-2-partial" / name).read_text(encoding="utf-8").split("\n"):
            line = line.strip()
            if line and not line.startswith("="):
                line = re.sub(r" @(.)@ ", r"\1", line)
                paragraphs.append(re.sub(r" ([.,;:!?)'])|([(]) ", r"\1\2", line))
    return paragraphs
