"""Training texts: the sources the public corpus was generated from (its
GENERATION/config.json), with every paragraph that holds a line of a corpus
page or line removed, so that no scored text is ever trained on."""

import glob
import json
import os
import random

import charset


def default_corpus():
    """$PERO_CORPUS, else the public corpus beside the checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("PERO_CORPUS", os.path.join(here, "..", "..", "shared", "corpus", "public"))


def _paragraphs(kind, path):
    with open(path, encoding="utf-8", errors="replace") as f:
        data = f.read()
    if kind == "fortune":
        parts = data.split("\n%\n")
    elif kind == "sentences":
        parts = data.split("\n")
    else:
        parts = data.split("\n\n")
    return [p for p in (charset.normalize(p) for p in parts) if len(p) >= 8]


def _scored_lines(corpus):
    """Normalised text of every line the benchmark scores."""
    lines = set()
    pats = ["pages/*.txt", "lines/*.gt.txt", "real/pages/*.txt", "real/lines/*.gt.txt"]
    for pat in pats:
        for path in glob.glob(os.path.join(corpus, pat)):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    t = charset.fold(line)
                    if len(t) >= 12:
                        lines.add(t)
    return lines


class Texts:
    """Paragraph pools per language, sampled by the source weights."""

    def __init__(self, corpus, max_per_source=20000):
        gen = os.path.join(corpus, "GENERATION")
        with open(os.path.join(gen, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        scored = _scored_lines(corpus)
        self.pools = {}
        self.dropped = 0
        for lang, sources in cfg["texts"].items():
            pool = []
            for src in sources:
                path = src["path"]
                if not os.path.isabs(path):
                    path = os.path.join(gen, path)
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f"text source {path} is missing (install fortunes fortunes-cs fortunes-de)")
                paras = _paragraphs(src["kind"], path)[: src.get("max", max_per_source)]
                for p in paras:
                    folded = p.replace("ſ", "s")
                    if any(s in folded for s in scored if len(s) <= len(folded)):
                        self.dropped += 1
                        continue
                    pool.append(p)
            if not pool:
                raise ValueError(f"no training text for {lang}")
            self.pools[lang] = pool
        self.langs = sorted(self.pools)

    def line(self, rng: random.Random, lang=None):
        """A run of whole words of 2-90 characters from one paragraph."""
        lang = lang or rng.choice(self.langs)
        pool = self.pools[lang]
        while True:
            words = rng.choice(pool).split(" ")
            target = int(rng.triangular(2, 90, 50))
            start = rng.randrange(len(words))
            out = []
            n = 0
            for w in words[start:]:
                if n and n + 1 + len(w) > target:
                    break
                out.append(w)
                n += len(w) + (1 if n else 0)
            text = " ".join(out)
            if text and charset.encode(text) is not None:
                return text


def random_line(rng: random.Random):
    """A line of characters drawn from the whole set, so that rare ones are
    seen: digits and signs, capitals, or any character."""
    kind = rng.random()
    n = rng.randint(3, 40)
    if kind < 0.4:
        pool = "0123456789.,:;-–—/()%+=§€$°'\"„“”‚‘’«» "
    elif kind < 0.6:
        pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜÉÈÀÇČŘŠŽĎŤŇĚŮÚÍÝÁ "
    else:
        pool = charset.CHARS + "     "
    text = "".join(rng.choice(pool) for _ in range(n))
    return " ".join(text.split()) or "0"


def long_s(text, rng: random.Random):
    """Historical spelling: s as ſ except at the end of a word."""
    out = []
    for i, c in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else " "
        out.append("ſ" if c == "s" and nxt.isalpha() else c)
    return "".join(out)


# Lines of the kind forms, invoices, letters and page furniture hold, in our
# own words: amounts, dates, numbers, phone numbers, ranges with en dashes
# and page numbers, each language with its own number and spacing habits.
_LABELS = {
    "en": ["Invoice", "Order no.", "Account", "Total", "Amount due", "Date", "Phone", "Fax", "Ref.", "Customer no.",
           "Balance", "Paid on", "Due by", "Room", "Hours", "Case", "Item", "Subtotal", "VAT", "Shipping"],
    "de": ["Rechnungsbetrag", "Auftrag", "Kundennummer", "Summe", "Datum", "Telefon", "Fax", "Aktenzeichen", "Konto",
           "Fällig am", "Öffnungszeiten", "Betrag", "Zimmer", "MwSt.", "Gesamt", "Bestellung", "Lieferung", "Az."],
    "fr": ["Facture", "Commande", "Montant", "Total", "Date", "Tél.", "Fax", "Réf.", "Client n°", "Échéance",
           "Horaires", "Adresse", "TVA", "Dossier", "Livraison", "Solde", "Article", "Bureau"],
    "cs": ["Faktura", "Objednávka", "Částka", "Celkem", "Datum", "Tel.", "Fax", "Č. j.", "Číslo účtu", "Splatnost",
           "Otevírací doba", "DPH", "Variabilní symbol", "Zákazník", "Dodání", "Položka", "Kancelář"],
}
_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "cs": "ledna února března dubna května června července srpna září října listopadu prosince",
}
_DAYS = {"en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"], "de": ["Mo", "Di", "Mi", "Do", "Fr", "Sa"],
         "fr": ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam."], "cs": ["po", "út", "st", "čt", "pá", "so"]}


def _group(n, sep):
    s = str(n)
    parts = []
    while len(s) > 3:
        parts.insert(0, s[-3:])
        s = s[:-3]
    parts.insert(0, s)
    return sep.join(parts)


def _amount(rng, lang):
    n, c = rng.randint(0, 10 ** rng.randint(1, 7)), rng.randint(0, 99)
    if lang == "en":
        v = f"{_group(n, ',')}.{c:02d}"
        return rng.choice([f"${v}", f"£{v}", f"{v} USD", f"€{v}"])
    if lang == "de":
        v = f"{_group(n, '.')},{c:02d}"
        return rng.choice([f"{v} €", f"EUR {v}", f"{v} EUR", f"{v} DM"])
    v = f"{_group(n, ' ')},{c:02d}"
    return rng.choice([f"{v} €", f"{v} EUR"]) if lang == "fr" else rng.choice([f"{v} Kč", f"{v} CZK", f"{v} €"])


def _date(rng, lang):
    d, m, y = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1890, 2030)
    name = _MONTHS[lang].split()[m - 1]
    if lang == "en":
        return rng.choice([f"{name} {d}, {y}", f"{d} {name} {y}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}"])
    if lang == "de":
        return rng.choice([f"{d:02d}.{m:02d}.{y}", f"{d}. {name} {y}", f"{d}.{m}.{y}"])
    if lang == "fr":
        return rng.choice([f"{d} {name} {y}", f"{d:02d}/{m:02d}/{y}", f"le {d} {name} {y}"])
    return rng.choice([f"{d}. {m}. {y}", f"{d}. {name} {y}", f"{d:02d}.{m:02d}.{y}"])


def _phone(rng, lang):
    dg = lambda k: "".join(str(rng.randint(0, 9)) for _ in range(k))  # noqa: E731
    return {
        "en": rng.choice([f"({dg(3)}) {dg(3)}-{dg(4)}", f"+44 {dg(2)} {dg(4)} {dg(4)}", f"+1 {dg(3)} {dg(3)} {dg(4)}"]),
        "de": rng.choice([f"+49 {dg(2)} {dg(7)}", f"0{dg(3)} / {dg(6)}", f"+49 {dg(3)} {dg(3)} {dg(4)}"]),
        "fr": rng.choice([f"+33 {dg(1)} {dg(2)} {dg(2)} {dg(2)} {dg(2)}", f"0{dg(1)} {dg(2)} {dg(2)} {dg(2)} {dg(2)}"]),
        "cs": rng.choice([f"+420 {dg(3)} {dg(3)} {dg(3)}", f"{dg(3)} {dg(3)} {dg(3)}"]),
    }[lang]


def _number(rng, lang):
    n = rng.randint(1, 10 ** rng.randint(2, 6))
    y = rng.randint(0, 99)
    return rng.choice([str(n), f"{n}/{y:02d}", f"{rng.randint(1, 9)} {rng.choice('ABCKLRS')} {n}/{y:02d}",
                       f"#{n}", f"{rng.choice(['AB', 'XZ', 'KT', 'RF'])}-{n}", f"{rng.randint(1990, 2030)}/{n}"])


def _range(rng, lang):
    a = rng.randint(1, 40)
    days = _DAYS[lang]
    i = rng.randrange(len(days) - 1)
    return rng.choice([f"{a}–{a + rng.randint(1, 30)}", f"{days[i]}–{days[rng.randrange(i + 1, len(days))]}",
                       f"{rng.randint(6, 10)}–{rng.randint(12, 19)}", f"{rng.randint(1800, 1950)}–{rng.randint(1951, 2025)}",
                       f"{rng.randint(7, 9)}:{rng.choice(['00', '30'])}–{rng.randint(12, 18)}:{rng.choice(['00', '30'])}"])


def page_number(rng, lang):
    n = rng.randint(1, 480)
    word = {"en": "Page", "de": "Seite", "fr": "Page", "cs": "Strana"}[lang]
    return rng.choice([f"– {n} –", f"- {n} -", f"— {n} —", str(n), f"{word} {n}", f"{word} {n} / {n + rng.randint(0, 20)}",
                       f"[{n}]", f"({n})"])


def structured_line(rng: random.Random, lang=None):
    """A line of labelled fields: 'Datum: 05.03.2019 – Betrag: 1.234,50 €'."""
    lang = lang or rng.choice(sorted(_LABELS))
    if rng.random() < 0.12:
        return page_number(rng, lang)
    colon = " : " if lang == "fr" else ": "
    fields = []
    for _ in range(rng.randint(1, 4)):
        value = rng.choice([_amount, _date, _phone, _number, _range])(rng, lang)
        if rng.random() < 0.75:
            fields.append(rng.choice(_LABELS[lang]) + rng.choice([colon, " "]) + value)
        else:
            fields.append(value)
    sep = rng.choice([", ", " – ", "; ", "  ", " | ", " · "])
    text = " ".join(sep.join(fields).split())
    if rng.random() < 0.3:
        text += rng.choice([".", ",", ";", ")"])
    return text[:90]


# French words spelt with the ligatures: the sources hold œ almost only in
# "nœud", so a model learns it in that one context.
_LIGATURE_WORDS = ["cœur", "œuvre", "sœur", "œil", "vœu", "vœux", "bœuf", "œuf", "œufs", "manœuvre", "mœurs", "nœud",
                   "chœur", "rancœur", "œsophage", "Œdipe", "ex-æquo", "cæcum", "curriculum vitæ", "Lætitia", "Œuvres",
                   "SŒUR", "CŒUR", "l'œuvre", "d'œuvre", "l'œil", "d'œil", "l'Œdipe", "hors-d'œuvre", "chef-d'œuvre"]


_QUOTES = {"en": ("“", "”", "‘", "’"), "de": ("„", "“", "‚", "‘"), "cs": ("„", "“", "‚", "‘"), "fr": ("« ", " »", "‹ ", " ›")}


def typographic(text, lang, rng: random.Random):
    """The same words as a typesetter would print them: en dashes between
    clauses and in ranges, the language's own quotation marks, and in French
    a word with the œ or æ ligature now and then."""
    if rng.random() < 0.5:
        text = text.replace(" - ", " – ").replace(" -- ", " – ").replace("--", "—")
    if lang in _QUOTES and '"' in text and rng.random() < 0.7:
        o, c, so, sc = _QUOTES[lang]
        parts = text.split('"')
        if len(parts) % 2 == 1:
            text = "".join(p if i % 2 == 0 else o + p.strip() + c for i, p in enumerate(parts)) if lang == "fr" else \
                "".join(p if i % 2 == 0 else o + p + c for i, p in enumerate(parts))
    if lang == "fr" and rng.random() < 0.25:
        words = text.split(" ")
        words[rng.randrange(len(words))] = rng.choice(_LIGATURE_WORDS)
        text = " ".join(words)
    if lang in _QUOTES and rng.random() < 0.15:
        o, c, so, sc = _QUOTES[lang]
        words = text.split(" ")
        if len(words) >= 4:
            i = rng.randrange(len(words) - 2)
            j = i + rng.randint(1, min(4, len(words) - i - 1))
            q = (o, c) if rng.random() < 0.6 else (so, sc)
            words[i] = q[0].strip() + words[i] if lang != "fr" else q[0] + words[i]
            words[j] = words[j] + q[1].strip() if lang != "fr" else words[j] + q[1]
            text = " ".join(words)
    return text


# Words in our own lists that carry the letters and signs the source texts
# hardly hold: the French tréma (the sources have one ï in 737 000
# characters), accented capitals, the rarer Czech and German letters,
# the letters of neighbouring languages the dictionary covers, signs, and
# short bracketed tokens. A line gets one or two of them in place of its
# words, sometimes capitalised or in capitals, so that each is seen in
# running text rather than only in random_line's strings.
_RARE_WORDS = {
    "fr": ["naïf", "naïve", "naïveté", "maïs", "héroïque", "héroïne", "égoïste", "égoïsme", "laïque", "laïcité",
           "mosaïque", "coïncidence", "stoïque", "inouï", "ouïe", "Moïse", "faïence", "païen", "caïman", "baïonnette",
           "haïr", "haïssable", "aïeul", "aïeux", "glaïeul", "camaïeu", "thaïlandais", "Anaïs", "Héloïse", "Loïc",
           "aiguë", "ciguë", "Noël", "Israël", "canoë", "Citroën", "Raphaël", "Joël", "capharnaüm", "Saül",
           "L'Haÿ-les-Roses", "Louÿs", "Ève", "Étienne", "Élise", "État", "Écosse", "Égypte", "Île-de-France",
           "Ça", "À", "Ô", "Être", "Hôtel", "Âme", "Où", "garçon", "français", "leçon", "reçu", "façade", "crème"],
    "de": ["Straße", "Fußball", "größer", "Grüße", "heißen", "Maß", "Gießen", "weiß", "Äpfel", "Öffnung", "Übung",
           "Ärger", "Österreich", "Überweisung", "Ägypten", "Ölbild", "Übersee", "GROẞE", "STRAẞE", "Bücher", "Mädchen"],
    "cs": ["ťukat", "zeď", "loď", "ďábel", "Ďáblice", "kůň", "dům", "půl", "kůra", "něco", "věc", "Šťastný", "Šumava",
           "Řím", "Říjen", "Čechy", "Ústí", "Žďár", "Ťapka", "Ňadra", "žluťoučký", "úpěl", "ďábelské", "ódy",
           "Ďuriš", "pěšky", "Dvořák", "Kroměříž", "Jihlava", "Jeseník", "Třeboň"],
    "en": ["naïve", "café", "résumé", "coöperate", "façade", "fiancée", "Zoë", "Brontë", "über", "déjà", "piñata",
           "jalapeño", "São", "Camões", "Guimarães", "Ångström", "Øresund", "Ærø", "Åland", "smørrebrød", "señor",
           "mañana", "España", "Niño", "perché", "così", "città", "però", "Niccolò", "Łódź", "Wrocław", "Kraków",
           "Gdańsk", "Poznań", "Kościuszko", "Wałęsa", "Źródło", "Żywiec", "Świnoujście", "Częstochowa", "ľudia",
           "kĺb", "vŕba", "Ľudovít", "Štúr", "Ĺ", "Ŕ", "Þórr", "Þingvellir", "Guðrún", "Ðakovo",
           "Ÿ", "Ï", "Ë", "Ê", "Û", "Ñ", "Õ", "Ã", "Å", "Ø", "Æ", "Ð", "Þ", "Ý", "Ì", "Ò"],
}
_RARE_ANY = ["(/)", "[/]", "(s)", "(e)", "(es)", "(?)", "(!)", "(*)", "[…]", "(…)", "[sic]", "(sic)", "(+)", "(-)",
             "(1)", "[2]", "(a)", "(ii)", "{x}", "<a>", "(%)", "5 × 3", "10 ÷ 2", "m²", "m³", "½", "¼", "¾", "© 1999",
             "®", "¶ 4", "† 1848", "x¹", "µm", "¡Hola!", "¿Qué?", "¥500", "25 ¢", "§ 12", "20 °C", "45°", "£3",
             "a/b", "und/oder", "et/ou", "and/or", "km/h", "1/2", "#7", "@", "~", "^", "|", "\\", "_"]


def rare_words(text, lang, rng: random.Random):
    """One or two words of the line replaced by words carrying rare letters
    or signs (_RARE_WORDS of the language and of all, _RARE_ANY), as
    written, capitalised or in capitals."""
    words = text.split(" ")
    pool = _RARE_WORDS.get(lang, []) + _RARE_ANY
    for _ in range(rng.choice((1, 1, 2))):
        w = rng.choice(pool)
        r = rng.random()
        cased = w.upper() if r < 0.15 else w[:1].upper() + w[1:] if r < 0.3 else w
        # Some have no capital in the dictionary (µ's is Greek).
        if charset.encode(cased) is not None:
            w = cased
        words[rng.randrange(len(words))] = w
    return " ".join(words)
