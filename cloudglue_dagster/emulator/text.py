"""Realistic, non-repeating texts for the emulator's prompt messages and choice contents.

Real completions do not repeat: every prompt and answer is its own text, so a warehouse of them
costs what its bytes cost. The emulator's texts are therefore drawn per record, yet stay cheap:

* a language has 8,192 *phrases* (two to six words after their separator, already JSON-escaped
  UTF-8) drawn from a vocabulary with Zipf-like word frequencies, plus timestamps, percentages,
  emoji and awkward sentences (quotes, backslashes, control characters, RTL, U+2028...) that
  exercise a client's escaping on ordinary pages; and a *corpus*: a few MB of those phrases in
  random order, built once per process (~0.1 s of CPU for all languages, ~12 MB);
* a text is a capitalized first word, two runs of whole phrases cut from the corpus at random
  places, and an end mark. The first word, the places and the lengths come from one SHAKE-128
  digest of ``(seed, record id)``, so a completion's body costs a digest, a few slices and one
  ``join``: about 5 microseconds of CPU for 1.4 KB (:class:`TextMaker`), where drawing every
  phrase separately cost 15;
* nothing is kept: a record's texts are generated again, identical, each time it is served.

Texts are distinct (two random cuts among the English corpus's 360,000 places, and a first
word), but their runs of phrases recur: a year of 1,000 completions a day serves ~250 MB of
English text cut from a 6.6 MB corpus. DuckDB's DICT_FSST compression does not see that (it
stores such texts in as many bytes as texts of independent words: 180 days of the bench's
data make a 265 MiB file); a compressor with a long window (zstd) would.

Languages are per record: most records are English; a share are in accented European words and
a share in Chinese/Japanese (no spaces, full-width punctuation).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import NamedTuple

__all__ = ["KINDS", "SPECIAL_SENTENCES", "Skeleton", "TextMaker", "placeholder", "skeleton", "warm_up"]

#: Kinds of text in a completion, each with its own lengths (see ``_LENGTHS``).
KINDS: tuple[str, ...] = ("system", "user", "assistant", "choice")

# Phrases per text: (minimum, spread); a text has min + spread * u1 * u2 phrases (u uniform in
# [0, 1)), mostly short ones as real prompts and answers are. A phrase is ~23 bytes (English:
# 3.6 words of ~5.5 letters and a separator). A ``choice`` is long (2 to 8 KB) for 6 draws in
# 256, about one completion in 40. These give a completion's JSON about 1.4 KB on average.
_LENGTHS: dict[str, tuple[int, int]] = {"system": (2, 16), "user": (2, 18), "assistant": (3, 40), "choice": (4, 54)}
_LONG = (85, 260)  # (minimum, spread) of a long choice, uniform
_LONG_DRAWS = 6
_MAX_PHRASES = _LONG[0] + _LONG[1]

# Phrases of a language, and first words: 8,192 each, so that 13 bits pick one.
_TABLE_SIZE = 1 << 13
_WORD_SLOTS = 1 << 16  # slots of the Zipf-weighted word pool the phrases are drawn from
# Phrases in a language's corpus (English; the others, rarer, get a quarter and an eighth).
_CORPUS_PHRASES = 360_000
_BIG_ENDIAN = sys.byteorder == "big"


def _length_tables() -> tuple[tuple[int, ...], ...]:
    """Per kind, the phrase count of each value of a text's length byte (deterministic)."""
    rng = random.Random("cloudglue-emulator:lengths")
    out = []
    for kind in KINDS:
        lo, spread = _LENGTHS[kind]
        counts = [lo + int(spread * rng.random() * rng.random()) for _ in range(256)]
        if kind == "choice":
            counts[:_LONG_DRAWS] = [_LONG[0] + int(_LONG[1] * (i + 0.5) / _LONG_DRAWS) for i in range(_LONG_DRAWS)]
        out.append(tuple(counts))
    return tuple(out)


_LENGTH_OF_BYTE = _length_tables()

# ------------------------------------------------------------------------------ vocabularies
# Ordered roughly by frequency: a word's weight is 1 / (rank + 2.7) (Zipf), so the first words
# are the common ones, as in real text.
_EN_FUNCTION = """
the of and to a in is that it for on with as at this by from be are was an or not but which they
we you he she his her their there what when where who how all can will one about more if into
than also so only some other time its up out then them these may would has have had do does did
been no each after before during while because over between through both first last next two
three new same any most very just like well here now still again even such many much our your
""".split()
_EN_NOUNS = """
video speaker scene clip segment frame camera shot presenter audience slide screen timestamp
minute second hour meeting demo product launch team question answer summary topic point moment
part section interview lecture tutorial recording transcript caption audio sound voice music
background light color kitchen office room stage table whiteboard chart graph number result
budget quarter revenue cost price customer user feature release roadmap plan goal risk issue
bug fix test build server data model example step process method approach idea reason problem
solution decision discussion conversation comment review report update change version document
file folder link page list item name title label tag category project company market sale
target strategy design prototype sketch drawing picture image photo view angle zoom cut
transition effect edit sequence story narrator host guest panel viewer channel episode series
season trailer highlight intro chapter person group crowd family friend colleague manager
engineer designer analyst chef teacher student doctor driver pilot player coach athlete artist
singer car road street city building house window door floor wall tree river coast beach
mountain night morning evening day week month year food recipe ingredient oven knife plate cup
bottle box bag phone laptop keyboard monitor cable microphone headphone tripod drone lens battery
""".split()
_EN_VERBS = """
show explain describe mention discuss present introduce start finish stop continue move turn
open close walk talk ask reply agree suggest propose decide compare measure count check confirm
watch notice need want work help share call join return arrive appear happen follow cover focus
mark reach raise reduce increase improve fail succeed pay spend save create cook pour mix stir
heat serve taste
""".split()
_EN_OTHER = """
say said begin began end run ran speak spoke see saw hear heard find found look hold held take
took give gave make made use try know knew think thought believe remember forget learn teach
send sent leave left lead led grow grew drop win won lose lost buy bought sell sold build built
write wrote read draw drew people men women children today tomorrow yesterday
important main key clear short long small large big high low early late quick slow easy hard
simple complex full empty final initial public private local global visible hidden bright dark
loud quiet warm cold fresh busy free different similar specific general technical visual verbal
positive negative strong weak better worse best worst real actual possible likely certain exact
rough overall entire whole several few little less least major minor basic advanced previous
following current recent upcoming annual monthly weekly daily remote
""".split()


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def _english() -> list[str]:
    """Function words first (the most frequent), then base words, then their inflections.

    The inflections (crude rules, good enough for statistics) make the vocabulary several times
    larger than what is written above, with the long tail real text has.
    """
    plurals = [_plural(w) for w in _EN_NOUNS]
    verb_forms = []
    for w in _EN_VERBS:
        stem = w[:-1] if w.endswith("e") else w
        past = w[:-1] + "ied" if _plural(w).endswith("ies") else stem + "ed"
        verb_forms += [_plural(w), stem + "ing", past]
    return _EN_FUNCTION + _EN_NOUNS + _EN_VERBS + _EN_OTHER + plurals + verb_forms


_EU_WORDS = """
le la les de des du et que qui une un dans pour sur avec est sont pas plus très aussi mais ou
o a os as um uma do da dos das em no na com por para não é são mais também muito já até
el la los las del y en con por para una es son más también pero según después está están
der die das und ist nicht mit für über auch sehr noch schon nach bei aus
vidéo réunion présentation équipe données caméra séquence première dernière été fenêtre tâche
résumé café déjà naïve élève écran thème système problème réponse question année début
vídeo reunião apresentação informação câmera sessão ação coração lição opção decisão atenção
padrão início conclusão relatório orçamento equipe gráfico próximo último número página
canción niño año día después cámara sesión acción opción decisión atención diseño señal
reunión análisis página último próximo gráfico público técnico música pequeño mañana
Größe Straße schön Übersicht Ärger Grüße Bücher Mädchen Übung Lösung Prüfung Änderung für
Zusammenfassung Besprechung Kamera Bildschirm Präsentation Ergebnis nächste Woche
Ångström smörgåsbord fjäril Øresund København Łódź Kraków Dvořák Škoda zoológico jalapeño
""".split()

_CJK_WORDS = """
视频 会议 讨论 产品 发布 用户 数据 预算 团队 项目 时间 问题 总结 演示 镜头 画面 场景 说话人
内容 分析 结果 市场 客户 计划 目标 风险 报告 版本 功能 设计 测试 开始 结束 然后 因为 所以
我们 他们 这个 那个 已经 可以 需要 重要 主要 第一 最后 今天 明天 厨房 做饭 巧克力 白板
動画 会議 要約 発表 製品 説明 場面 話者 資料 質問 回答 予算 時間 結果 今日 明日 最初
最後 重要 確認 議論 計画 目標 顧客 市場 画面 映像 音声 字幕 料理 台所 説明書 担当者
について です ます した して いる ある この その 場合 ため から まで
""".split()

# Awkward sentences, as the old fixed pool had them: each needs careful escaping somewhere.
SPECIAL_SENTENCES: tuple[str, ...] = (
    'She said "ship it" and the room laughed.',
    "Café, déjà vu, naïve résumé, jalapeño, Ångström.",
    "视频里的人在厨房做饭，然后讨论了预算。",
    "動画の要約：会議は十時に始まりました。",
    "회의 요약: 다음 주에 출시합니다.",
    "Great demo 🎬🍳👍 — really 🔥!",
    "Family emoji 👨‍👩‍👧‍👦 and flags 🇵🇹🇯🇵.",
    "Path on disk: C:\\videos\\2026\\clip_01.mp4 and regex \\d+\\.mp4",
    "Line one\nLine two\n\tindented line three\r\nwindows line",
    'JSON-ish text: {"key": [1, 2, 3], "nested": {"a": null}}',
    "Greek: Σύνοψη βίντεο. Russian: Краткое содержание. Arabic: ملخص الفيديو.",
    "Separators\u2028inside\u2029text and a zero\u200bwidth space.",
    "Math: ∑ x² ≤ ∞, arrows → ⇒, quotes ‘single’ “double”.",
    "Tab\tseparated\tvalues and a trailing backslash \\",
)
_EMOJI = ("🎬", "👍", "🔥", "🍳", "📈", "✅", "🙂", "🚀")


def _esc(text: str) -> bytes:
    """JSON string body of ``text`` (no quotes), UTF-8, non-ASCII kept as is."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")


def _expanded(words: Sequence[bytes], size: int) -> list[bytes]:
    """``words`` repeated by Zipf weight into exactly ``size`` slots (rank 0 the most frequent).

    Deterministic in ``len(words)`` alone, so two parallel lists (say, words and their
    capitalized forms) expand the same way.
    """
    weights = [1.0 / (rank + 2.7) for rank in range(len(words))]
    scale = size / sum(weights)
    out: list[bytes] = []
    for w, weight in zip(words, weights):
        out.extend([w] * max(1, int(weight * scale)))
    rng = random.Random(f"cloudglue-emulator:expand:{len(words)}")
    while len(out) < size:  # rounding left some slots: give them to random words
        out.append(words[int(rng.random() * len(words))])
    return out[:size]


def _u16(rng: random.Random, n: int) -> array[int]:
    """``n`` uniform 16-bit values from ``rng``, the same on every platform."""
    values = array("H", rng.randbytes(2 * n))
    if _BIG_ENDIAN:
        values.byteswap()
    return values


class _Language(NamedTuple):
    """A language's tables and corpus."""

    phrases: list[bytes]  # 8,192 phrases, each after its separator, JSON-escaped UTF-8
    starts: list[bytes]  # 8,192 capitalized first words (Zipf-weighted)
    ends: tuple[bytes, ...]  # the end mark of a text, per kind (a question mark for a user message)
    corpus: bytes  # phrases in random order
    places: array[int]  # offset in ``corpus`` of each of its phrases, and its length last
    cuts: int  # a run of phrases starts at one of the first ``cuts`` places (then fits)


# Separators before a phrase, JSON-escaped UTF-8, as (separator, next word capitalized), out of
# 256: mostly a space, sometimes a comma, a full stop, a question mark or a paragraph break.
_SEPARATORS = {
    "latin": [(b" ", False)] * 200
    + [(b", ", False)] * 24
    + [(b". ", True)] * 25
    + [(b"? ", True)] * 2
    + [(b".\\n\\n", True)] * 5,
    "cjk": [(b"", False)] * 206
    + [("，".encode(), False)] * 30
    + [("。".encode(), False)] * 18
    + [("。\\n\\n".encode(), False)] * 2,
}
# Shares of the 8,192 distinct phrases, as slot bounds: two to six words (3.6 on average: one
# lookup gives ~23 bytes, which halves the cost of a text against single words; DuckDB's
# DICT_FSST stores such texts in as many bytes as texts of independent words), then timestamps
# ("at 12:07"), percentages, emoji and the awkward sentences.
_WORDS_PER_PHRASE = ((0, 1_610, 2), (1_610, 4_020, 3), (4_020, 6_030, 4), (6_030, 7_240, 5), (7_240, 7_860, 6))
_WORDS_END, _TIMES, _PERCENTS, _EMOJIS = 7_860, 7_990, 8_060, 8_136
# The awkward sentences take the last 56 slots, 4 each: about one record in three holds one, so
# a page of 100 holds most of them (the old fixed pool: 3 sentences in 10).
_SPECIAL_SLOTS = (_TABLE_SIZE - _EMOJIS) // len(SPECIAL_SENTENCES)


def _build(name: str) -> _Language:
    """Build the tables and corpus of ``name`` (``en``, ``eu`` or ``cjk``); deterministic.

    ~60 ms of CPU and ~10 MB for English, a quarter and an eighth of that for the others.
    """
    rng = random.Random(f"cloudglue-emulator:phrases:{name}")
    cjk = name == "cjk"
    words = _CJK_WORDS if cjk else _english() if name == "en" else _EU_WORDS
    size = _TABLE_SIZE
    # Words hold nothing JSON escapes (checked by the tests); separators are escaped already.
    pool = _expanded([w.encode() for w in words], _WORD_SLOTS)
    caps = _expanded([(w[:1].upper() + w[1:]).encode() for w in words], _WORD_SLOTS)
    seps_table = _SEPARATORS["cjk" if cjk else "latin"]
    seps = list(map(seps_table.__getitem__, rng.randbytes(size)))
    first_idx = _u16(rng, size)
    first = list(map(pool.__getitem__, first_idx))
    for slot in [slot for slot, (_, cap) in enumerate(seps) if cap]:
        first[slot] = caps[first_idx[slot]]
    more = [list(map(pool.__getitem__, _u16(rng, size))) for _ in range(5)]
    sep = [s for s, _ in seps]
    ws = b"" if cjk else b" "
    phrases: list[bytes] = []
    for lo, hi, n in _WORDS_PER_PHRASE:
        columns = [first[lo:hi]] + [m[lo:hi] for m in more[: n - 1]]
        phrases += [s + ws.join(w) for s, w in zip(sep[lo:hi], zip(*columns))]
    at = b"at " if name == "en" else b""
    phrases += [
        sep[slot] + (at if sep[slot] == b" " else b"") + b"%02d:%02d" % (slot * 7 % 60, slot * 13 % 60)
        for slot in range(_WORDS_END, _TIMES)
    ]
    phrases += [sep[slot] + b"%g%%" % (slot % 1000 / 10) for slot in range(_TIMES, _PERCENTS)]
    phrases += [b" " + _EMOJI[slot % len(_EMOJI)].encode() for slot in range(_PERCENTS, _EMOJIS)]
    phrases += [b" " + _esc(sentence) for sentence in SPECIAL_SENTENCES for _ in range(_SPECIAL_SLOTS)]
    assert len(phrases) == size, len(phrases)
    starts = _expanded([(w[:1].upper() + w[1:]).encode() for w in words], size)
    end, question = (_esc("。"), _esc("？")) if cjk else (b".", b"?")
    # The corpus: 16-bit draws index the phrases repeated 8 times (a C-level map, no masking).
    count = _CORPUS_PHRASES // {"en": 1, "eu": 4, "cjk": 8}[name]
    chosen = list(map((phrases * (65_536 // size)).__getitem__, _u16(rng, count)))
    places = array("I", [0])
    places.extend(accumulate(map(len, chosen)))
    corpus = b"".join(chosen)
    ends = tuple(question if k == "user" else end for k in KINDS)
    return _Language(phrases, starts, ends, corpus, places, count - _MAX_PHRASES)


_LANG_NAMES = ("en", "eu", "cjk")
_languages: dict[str, _Language] = {}
_languages_lock = threading.Lock()


def _language(name: str) -> _Language:
    lang = _languages.get(name)
    if lang is None:
        with _languages_lock:
            lang = _languages.get(name)
            if lang is None:
                lang = _languages[name] = _build(name)
    return lang


def warm_up() -> None:
    """Build every language's tables now (else when a :class:`TextMaker` is made, ~0.1 s in all)."""
    for name in _LANG_NAMES:
        _language(name)


# ------------------------------------------------------------------------------ skeletons
_PLACEHOLDER = "\x00cg-text:{}\x00"
_PLACEHOLDER_RE = re.compile(rb"\\u0000cg-text:(\w+)\\u0000")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}


def placeholder(kind: str) -> str:
    """The string standing for a text of ``kind`` (one of :data:`KINDS`) in a body."""
    if kind not in _KIND_CODE:
        raise ValueError(f"unknown text kind {kind!r}; expected one of {KINDS}")
    return _PLACEHOLDER.format(kind)


class Skeleton(NamedTuple):
    """A serialized body cut at its texts: ``segments[0] + text0 + segments[1] + ... + segments[-1]``."""

    segments: tuple[bytes, ...]
    kinds: tuple[int, ...]  # indices into KINDS, one per text


def skeleton(serialized: bytes) -> Skeleton:
    """Cut a body serialized (as compact JSON) with :func:`placeholder` strings at those placeholders."""
    pieces = _PLACEHOLDER_RE.split(serialized)
    return Skeleton(tuple(pieces[0::2]), tuple(_KIND_CODE[k.decode()] for k in pieces[1::2]))


# ------------------------------------------------------------------------------ generation
# Per-record share of the languages, out of 256 (the byte after the length bytes): ~83% English,
# ~11% accented European words, ~6% Chinese/Japanese.
_LANG_OF_BYTE = tuple("en" if b < 212 else "eu" if b < 240 else "cjk" for b in range(256))


class _Compiled(NamedTuple):
    """A skeleton as a :class:`TextMaker` renders it."""

    first: bytes  # the JSON before the first text
    lengths: tuple[tuple[int, ...], ...]  # per text, the phrase count of each length byte value
    segments: tuple[tuple[bytes, ...], ...]  # per language: each text's end mark + the JSON after it
    digest_size: int  # bytes of SHAKE-128 output a record takes
    unpack: Callable[[bytes], tuple[int, ...]]  # those bytes as little-endian uint32 values


class TextMaker:
    """Renders skeletons with texts drawn from ``(seed, record key)``; thread-safe, stateless.

    Per record, one SHAKE-128 digest read as little-endian uint32 values (the same on every
    platform): the first value's low byte picks the language; then three per text: a first word
    (low 13 bits) and a length (high byte), and where its two runs of phrases are cut from the
    corpus. Making a maker builds the languages' corpora if needed (~0.1 s of CPU, once per
    process).
    """

    def __init__(self, seed: int, skeletons: Sequence[Skeleton]) -> None:
        self._prefix = b"cloudglue-emulator:text:%d:" % seed
        self._langs = tuple(_language(name) for name in _LANG_OF_BYTE)
        self._lang_index = tuple(_LANG_NAMES.index(name) for name in _LANG_OF_BYTE)
        self._compiled: list[_Compiled] = []
        for skel in skeletons:
            n = len(skel.kinds)
            per_lang = tuple(
                tuple(_language(name).ends[k] + seg for k, seg in zip(skel.kinds, skel.segments[1:]))
                for name in _LANG_NAMES
            )
            unpack = struct.Struct(f"<{1 + 3 * n}I").unpack
            lengths = tuple(_LENGTH_OF_BYTE[k] for k in skel.kinds)
            self._compiled.append(_Compiled(skel.segments[0], lengths, per_lang, 4 * (1 + 3 * n), unpack))

    def compiled(self, index: int) -> _Compiled:
        """The ``index``-th skeleton given to the constructor, ready for :meth:`body`."""
        return self._compiled[index]

    def body(self, skel: _Compiled, key: bytes) -> bytes:
        """The body of ``skel`` with its texts, for the record ``key`` (its id).

        Deterministic: the same ``(seed, key)`` always gives the same bytes, on every platform.
        Cost: about 5 microseconds of CPU for a 1.4 KB completion (one digest, ~1 us; then per
        text a few operations and two slices of the corpus; one join).
        """
        values = skel.unpack(hashlib.shake_128(self._prefix + key).digest(skel.digest_size))
        which = values[0] & 0xFF
        corpus, places, cuts = (lang := self._langs[which]).corpus, lang.places, lang.cuts
        starts = lang.starts
        out = [skel.first]
        draws = iter(values)
        next(draws)
        for table, segment, word, cut1, cut2 in zip(
            skel.lengths, skel.segments[self._lang_index[which]], draws, draws, draws
        ):
            n = table[word >> 24]
            half = n >> 1
            a, b = cut1 % cuts, cut2 % cuts
            out += (
                starts[word & (_TABLE_SIZE - 1)],
                corpus[places[a] : places[a + half]],
                corpus[places[b] : places[b + n - half]],
                segment,
            )
        return b"".join(out)
