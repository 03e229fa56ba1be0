"""The recognizer's character set and the text normalisation shared by
training, evaluation and export.

Class 0 is the CTC blank, classes 1..len(CHARS) are CHARS in order and the
last class is the space, the layout the Go engine reads from a dictionary
file with use_space_char = yes.
"""

import unicodedata

ASCII = "".join(chr(c) for c in range(33, 127))
# Letters of Czech, German and French (with the rest of Latin-1 and a few of
# Latin Extended-A that neighbouring languages print), the long s of
# historical print, typographic quotes, dashes and common signs.
LETTERS = (
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
    "ČčĎďĚěŇňŘřŠšŤťŮůŽžĹĺĽľŔŕŒœŸſĄąĆćĘęŁłŃńŚśŹźŻżẞ"
)
SIGNS = "„“”‚‘’«»‹›–—―…·•§°€£¥¢©®×÷¶†¹²³½¼¾µ¡¿"
CHARS = ASCII + LETTERS + SIGNS
assert len(set(CHARS)) == len(CHARS)

NUM_CLASSES = len(CHARS) + 2  # blank + characters + space
INDEX = {c: i + 1 for i, c in enumerate(CHARS)}
INDEX[" "] = len(CHARS) + 1

# Historical spellings that Unicode does not compose and presentation forms,
# written the way the dictionary spells them.
_REPLACE = {
    "a\u0364": "ä", "o\u0364": "ö", "u\u0364": "ü",
    "A\u0364": "Ä", "O\u0364": "Ö", "U\u0364": "Ü",
    "\u2e17": "-",  # double oblique hyphen of Fraktur
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "ſt", "\ufb06": "st",
    "\u00ad": "", "\u200b": "", "\ufeff": "",
    "\u00a0": " ", "\t": " ", "\u2009": " ", "\u202f": " ",
    "\u2010": "-", "\u2011": "-", "\u2212": "-",
    "\u201f": "“", "\u2032": "'", "\u2033": '"',
}


def normalize(text):
    """NFC, the replacements above and single spaces."""
    text = unicodedata.normalize("NFC", text)
    for a, b in _REPLACE.items():
        if a in text:
            text = text.replace(a, b)
    return " ".join(text.split())


def fold(text):
    """The modernised spelling the corpus scores against: long s as s."""
    return normalize(text).replace("ſ", "s")


def encode(text):
    """Class indices of a normalised text, or None if a character is not
    in the set."""
    out = []
    for c in text:
        i = INDEX.get(c)
        if i is None:
            return None
        out.append(i)
    return out


def decode(indices):
    """Text of greedy CTC output: repeats collapsed, blanks dropped."""
    out, prev = [], 0
    for i in indices:
        if i != prev and i != 0:
            out.append(" " if i == len(CHARS) + 1 else CHARS[i - 1])
        prev = i
    return "".join(out)


def dictionary_text():
    """The dictionary file: one character per line, space excluded."""
    return "".join(c + "\n" for c in CHARS)


def levenshtein(a, b):
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
