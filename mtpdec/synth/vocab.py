"""A small byte-level BPE vocabulary for synthetic models, learned deterministically.

Layout (ids): the 256 byte symbols of GPT-2's ``bytes_to_unicode`` map in GPT-2's order,
then the learned merge tokens in merge order, then the special tokens, then ``[PAD<i>]``
tokens (type UNUSED, as ``convert_hf_to_gguf`` writes them) up to the vocabulary size.

The merges are learned from word frequencies of a built-in word list (English words and
code fragments, Zipf-like counts, pre-tokenized the way the ``qwen35`` pre-tokenizer
splits: a leading space or punctuation character stays with the letters that follow).
No randomness and no files are involved, so every run and every machine gets the same
vocabulary, and the vocabulary of a smaller size is a prefix of a larger one.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from mtpdec.tokenizer.bpe import byte_chars

# gguf.TokenType values (kept here so that the numbers are visible).
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5

# (text, token type). CONTROL tokens are only matched when parsing specials; the
# USER_DEFINED ones are matched in plain text too (as in the real Qwen3.5 vocabulary).
SPECIAL_TOKENS: tuple[tuple[str, int], ...] = (
    ("<|endoftext|>", TOKEN_CONTROL),
    ("<|im_start|>", TOKEN_CONTROL),
    ("<|im_end|>", TOKEN_CONTROL),
    ("<think>", TOKEN_USER_DEFINED),
    ("</think>", TOKEN_USER_DEFINED),
)
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
MAX_MERGES = 8000

_ENGLISH = """
the of and to a in is it you that he was for on are with as I his they be at one have
this from or had by hot word but what some we can out other were all there when up use
your how said an each she which do their time if will way about many then them write
would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round
man year came show every good me give our under name very through just form sentence
great think say help low line differ turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth
father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real
life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second
book carry took science eat room friend began idea fish mountain stop once base hear
horse cut sure watch color face wood main enough plain girl usual young ready above ever
red list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better
true during hundred five remember step early hold west ground interest reach fast verb
sing listen six table travel less morning ten simple several vowel toward war lay against
pattern slow center love person money serve appear road map rain rule govern pull cold
notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force
blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss
brought heat snow tire bring yes distant fill east paint language among grand ball yet
wave drop heart present heavy dance engine position arm wide sail material size vary
settle speak weight general ice matter circle pair include divide syllable felt perhaps
pick sudden count square reason length represent art subject region energy hunt probable
bed brother egg ride cell believe fraction forest sit race window store summer train
sleep prove lone exercise wall catch mount wish sky board joy winter sat written wild
instrument kept glass grass cow job edge sign visit past soft fun bright gas weather
month million bear finish happy hope flower clothe strange gone jump baby eight village
meet root buy raise solve metal whether push seven paragraph third shall held hair
describe cook floor either result burn hill safe cat century consider type law bit coast
copy phrase silent tall sand soil roll temperature finger industry value fight lie beat
excite natural view sense ear else quite broke case middle kill son lake moment scale
loud spring observe child straight consonant nation dictionary milk speed method organ
pay age section dress cloud surprise quiet stone tiny climb cool design poor lot
experiment bottom key iron single stick flat twenty skin smile crease hole trade melody
trip office receive row mouth exact symbol die least trouble shout except wrote seed tone
join suggest clean break lady yard rise bad blow oil blood touch grew cent mix team wire
cost lost brown wear garden equal sent choose fell fit flow fair bank collect save
control decimal gentle woman captain practice separate difficult doctor please protect
noon whose locate ring character insect caught period indicate radio spoke atom human
history effect electric expect crop modern element hit student corner party supply bone
rail imagine provide agree thus capital chair danger fruit rich thick soldier process
operate guess necessary sharp wing create neighbor wash bat rather crowd corn compare poem
string bell depend meat rub tube famous dollar stream fear sight thin triangle planet
hurry chief colony clock mine tie enter major fresh search send yellow gun allow print
dead spot desert suit current lift rose continue block chart hat sell success company
subtract event particular deal swim term opposite wife shoe shoulder spread arrange camp
invent cotton born determine quart nine truck noise level chance gather shop stretch
throw shine property column molecule select wrong gray repeat require broad prepare salt
nose plural anger claim continent oxygen sugar death pretty skill women season solution
magnet silver thank branch match suffix especially fig afraid huge sister steel discuss
forward similar guide experience score apple bought led pitch coat mass card band rope
slip win dream evening condition feed tool total basic smell valley nor double seat
arrive master track parent shore division sheet substance favor connect post spend chord
fat glad original share station dad bread charge proper bar offer segment slave duck
instant market degree populate chick dear enemy reply drink occur support speech nature
range steam motion path liquid log meant quotient teeth shell neck model token layer
weights tensor matrix vector decode encode speculative draft accept reject verify sample
"""

_CODE = """
def return import from class self None True False if elif else for while in not and or
with as try except finally raise pass break continue lambda yield async await assert
global nonlocal del print len range int float str list dict set tuple bool bytes open
append extend insert pop keys values items get update sort sorted reversed enumerate zip
map filter sum min max abs round isinstance hasattr getattr setattr super init main
args kwargs path file name value data result config model tokens logits state cache
shape dtype size index offset count total buffer array numpy np torch cuda kernel
thread block grid stride row col rows cols batch seq head heads layer layers norm eps
weight bias scale zero one two const static void char unsigned struct include define
return_value max_tokens n_embd n_head n_layer n_vocab hidden_size num_heads float32
uint8 int32 forward backward step loss grad optimizer train eval test assert_equal
function var let console log println fmt err nil func package interface string error
public private protected new this null undefined true false switch case default
"""

_PUNCT = (
    "(",
    ")",
    "):",
    "()",
    " (",
    " =",
    " ==",
    " !=",
    " +=",
    " +",
    " -",
    " *",
    " /",
    " <",
    " >",
    " <=",
    " >=",
    ",",
    ".",
    ":",
    ";",
    " {",
    "}",
    " [",
    "]",
    "[",
    "],",
    "\n",
    "\n\n",
    "    ",
    "        ",
    " ->",
    " #",
    '"',
    ' "',
    "'",
    ".\n",
    ",\n",
    "):\n",
    " //",
    " /*",
    " */",
    "...",
    " -",
    "!",
    "?",
    "'s",
    "'t",
    "'re",
    "'ll",
)


@functools.cache
def bytes_to_unicode() -> tuple[tuple[int, str], ...]:
    """GPT-2's byte -> printable unicode map (``mtpdec.tokenizer.bpe.byte_chars``), as
    (byte, symbol) pairs in GPT-2's vocab order: the bytes that stand for themselves,
    then the others, each in byte order."""
    chars = byte_chars()
    own = [b for b in range(256) if ord(chars[b]) == b]
    return tuple((b, chars[b]) for b in own + [b for b in range(256) if b not in own])


def _byte_symbols() -> dict[int, str]:
    return dict(bytes_to_unicode())


def _word_counts() -> dict[str, int]:
    """Pre-tokenized pieces of the built-in corpus with Zipf-like counts (deterministic)."""
    counts: dict[str, int] = {}

    def add(piece: str, n: int) -> None:
        counts[piece] = counts.get(piece, 0) + max(n, 1)

    for rank, word in enumerate(_ENGLISH.split()):
        base = 200_000 // (rank + 20)
        add(" " + word, base)
        add(word, base // 4)
        add(" " + word.capitalize(), base // 6)
        add(word.capitalize(), base // 8)
    for rank, word in enumerate(_CODE.split()):
        base = 60_000 // (rank + 10)
        add(" " + word, base)
        add(word, base // 2)
        add("." + word, base // 5)
        add("_" + word, base // 8)
    for rank, piece in enumerate(_PUNCT):
        add(piece, 80_000 // (rank + 5))
    return counts


def learn_merges(n_merges: int) -> list[tuple[str, str]]:
    """The first ``n_merges`` BPE merges of the built-in corpus (fewer if it runs out).

    Greedy BPE: repeatedly merge the most frequent adjacent symbol pair (ties broken by
    the pair's text, so the result is fully deterministic).
    """
    return list(_learn_merges_cached(MAX_MERGES)[:n_merges])  # learned once per process


@functools.cache
def _learn_merges_cached(n_merges: int) -> tuple[tuple[str, str], ...]:
    sym = _byte_symbols()
    words: list[list[str]] = []
    freqs: list[int] = []
    for piece, n in sorted(_word_counts().items()):
        words.append([sym[b] for b in piece.encode("utf-8")])
        freqs.append(n)

    pair_count: dict[tuple[str, str], int] = {}
    pair_words: dict[tuple[str, str], set[int]] = {}
    for wi, w in enumerate(words):
        for pair in pairwise(w):
            pair_count[pair] = pair_count.get(pair, 0) + freqs[wi]
            pair_words.setdefault(pair, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    def change(pair: tuple[str, str], delta: int, wi: int) -> None:
        c = pair_count.get(pair, 0) + delta
        pair_count[pair] = c
        if delta > 0:
            pair_words.setdefault(pair, set()).add(wi)
        if c > 0:
            heapq.heappush(heap, (-c, pair))

    merges: list[tuple[str, str]] = []
    while heap and len(merges) < n_merges:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale heap entry
        merges.append(pair)
        a, b = pair
        joined = a + b
        for wi in sorted(pair_words.pop(pair, ())):
            w, f = words[wi], freqs[wi]
            if len(w) < 2:
                continue
            for p in pairwise(w):
                change(p, -f, wi)
            out: list[str] = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in pairwise(out):
                change(p, f, wi)
        pair_count[pair] = 0
    return tuple(merges)


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]  # "left right", in rank order
    bos_id: int
    eos_id: int
    pad_id: int


def build_vocab(n_vocab: int) -> Vocab:
    """Tokens, types and merges for a vocabulary of exactly ``n_vocab`` entries."""
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"vocab {n_vocab} is below the minimum {MIN_VOCAB}")
    return vocab_from_merges(learn_merges(n_vocab - MIN_VOCAB), n_vocab)


def vocab_from_merges(merge_rules: Iterable[tuple[str, str]], n_vocab: int) -> Vocab:
    """The layout of the module docstring for merge rules in rank order (pairs of byte
    -level strings), as many as fit ``n_vocab`` entries with the specials."""
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"vocab {n_vocab} is below the minimum {MIN_VOCAB}")
    tokens = [s for _, s in bytes_to_unicode()]
    types = [TOKEN_NORMAL] * len(tokens)
    seen = set(tokens)
    n_normal = n_vocab - len(SPECIAL_TOKENS)
    merges: list[tuple[str, str]] = []
    # Two merges may spell the same token ("a"+"bc", "ab"+"c"): the rule is kept, the
    # token is not repeated.
    for a, b in merge_rules:
        if len(tokens) == n_normal:
            break
        merges.append((a, b))
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
            types.append(TOKEN_NORMAL)
    first_special = len(tokens)
    for text, kind in SPECIAL_TOKENS:
        tokens.append(text)
        types.append(kind)
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(TOKEN_UNUSED)
    endoftext = first_special
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=[f"{a} {b}" for a, b in merges],
        bos_id=endoftext,
        eos_id=first_special + 2,  # <|im_end|>, as in the instruct models
        pad_id=endoftext,
    )
