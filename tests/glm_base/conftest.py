"""Shared fixtures for glm_base tests: a small EN+ZH corpus written here and a tokenizer trained on it.

Nothing is downloaded; training the tokenizer takes well under a second.
"""

from __future__ import annotations

import pytest

EN_TEXT = """\
The river town of Alder Bend sits where two valleys meet. Its bridge was built in 1887 from grey stone.
Every spring the farmers bring apples, pears and honey to the market on the square.
Mira Castell keeps the lighthouse on the northern cliff. She has kept it for thirty-one years!
Does the ferry still run on Sundays? It does, but only twice: at nine in the morning and at four.
The library holds 12,400 books, a globe from 1902 and a map that shows the old salt road.
Children learn to swim in the quiet bay below the mill. The water is cold until July.
When the wind turns east, the fishermen stay home and mend their nets by the fire.
The mayor, Tomas Reed, was elected in 2019. He promised a new school and kept his word.
A narrow path climbs from the harbour to the chapel; it has 214 steps and no railing.
Bakers start work at four o'clock. By six the smell of bread fills the whole street.
In winter the pass to the capital closes, and letters arrive by boat instead of by coach.
The old clock on the town hall runs seven minutes slow, and nobody wants it fixed.
Scientists from the university count the seabirds every June. Last year they found 3,150 pairs.
"Keep the lamp lit," the first keeper wrote in the logbook, "whatever the weather brings."
"""

ZH_TEXT = """\
青石镇坐落在两条山谷交汇的地方。镇上的石桥建于一八八七年，用的是灰色的石头。
每年春天，农民们把苹果、梨和蜂蜜带到广场上的集市。
米拉在北边悬崖上看守灯塔，她已经守了三十一年！
星期天还有渡船吗？有的，不过只有两班：早上九点和下午四点。
图书馆藏书一万二千四百册，还有一个一九零二年的地球仪和一张标出古盐道的地图。
孩子们在磨坊下面平静的海湾里学游泳。七月以前，海水一直很冷。
风向转东的时候，渔民们就待在家里，在火炉边修补渔网。
镇长里德是二零一九年当选的。他答应建一所新学校，并且做到了。
一条窄路从港口通往小教堂，一共有二百一十四级台阶，没有栏杆。
面包师凌晨四点开始工作。到了六点，整条街都飘着面包的香味。
冬天通往首都的山口会关闭，信件改由船运送，而不是马车。
镇公所上的老钟慢了七分钟，可是谁也不想把它修好。
大学的科学家每年六月来数海鸟。去年他们一共数到三千一百五十对。
"无论天气如何，都要让灯亮着，"第一任守塔人在日志里这样写道。
"""

MIXED_TEXT = """\
青石镇 (Alder Bend) has a lighthouse 灯塔 and a bridge built in 1887 年。
The keeper Mira 米拉 said: "风向转东" means the wind turns east!
"""


def corpus_texts() -> list[str]:
    """Training texts: the paragraphs above, line by line, repeated so that BPE sees pairs often."""
    lines = [ln for ln in (EN_TEXT + ZH_TEXT + MIXED_TEXT).splitlines(keepends=True) if ln.strip()]
    return lines * 4


@pytest.fixture(scope="session")
def tokenizer():
    from glm_base.tokenizer import train_tokenizer

    return train_tokenizer(corpus_texts(), vocab_size=1200)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, tokenizer):
    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def sample_texts() -> dict[str, str]:
    """The corpus texts by language, for tests that need raw text."""
    return {"en": EN_TEXT, "zh": ZH_TEXT, "mixed": MIXED_TEXT}

