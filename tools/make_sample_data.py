"""Generate the bundled SYNTH-schema sample data set, data/sample/synth_sample.parquet.

The sample is a small, fully original stand-in for PleIAs/SYNTH (same fourteen columns, same exercise
kinds, several languages). It exists so that data preparation (Harmony rendering, tokenisation, the
length drop policy), teacher scoring and the tests can run end to end without the real corpus, and so
that they meet the awkward inputs a real dump contains: null and empty fields, literal Harmony control
strings inside ordinary text, zero-width joiners, right-to-left scripts, combining marks, a NUL
character, a very long unbroken line, a reasoning trace far longer than a 4096-token context and a
duplicated synth_id. data/sample/README.md lists those rows.

Every text was written for this project: per-language topic passages, facts and phrase templates are
combined by a seeded random.Random (re-seeded per row from a string, so no hash randomisation leaks in).
Running the script twice writes byte-identical files.

Usage: .venv/bin/python tools/make_sample_data.py [--output PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import textwrap
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from random import Random

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240917
MODEL = "vpmoe-sample-writer"
LICENSE = "CC-BY-SA 4.0"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "data" / "sample" / "synth_sample.parquet"

COLUMNS = (
    "synth_id",
    "language",
    "exercise",
    "model",
    "query",
    "query_seed_url",
    "query_seed_text",
    "additional_seed_url",
    "seed_license",
    "constraints",
    "script",
    "synthetic_reasoning",
    "synthetic_answer",
    "words",
)
SCHEMA = pa.schema([(c, pa.int64() if c == "words" else pa.string()) for c in COLUMNS])

# Label of the (fictional) generation template behind each exercise kind; goes to the `script` column.
SCRIPTS = {
    "memorization": "synth_memorization_v3",
    "rag": "synth_rag_multisource_v2",
    "mcq": "synth_mcq_v2",
    "math_exercise": "synth_math_word_v1",
    "editing": "synth_editing_proofread_v1",
    "creative_writing": "synth_creative_v2",
    "constrained_writing": "synth_constrained_v1",
}

LANG_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pl": "Polish",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ja": "Japanese",
    "zh": "Chinese",
}
CJK = ("ja", "zh")


# --------------------------------------------------------------------------------------------------
# Content model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    q: str
    a: str
    wrong: tuple[str, ...]
    key: str
    note: str | None = None


@dataclass
class Topic:
    lang: str
    title: str
    sents: list[str]
    facts: list[Fact]

    @property
    def url(self) -> str:
        return wiki_url(self.lang, self.title)

    @property
    def text(self) -> str:
        return join_sents(self.sents, self.lang)

    def ev(self, fact: Fact) -> int:
        hits = [i for i, s in enumerate(self.sents) if fact.key.casefold() in s.casefold()]
        if not hits:
            raise ValueError(f"{self.title}: key {fact.key!r} not found in passage")
        return hits[0]


def F(q: str, a: str, wrong: str, key: str | None = None, note: str | None = None) -> Fact:
    """A fact: question, short answer, three ' | '-separated distractors, evidence key, optional note."""
    ws = tuple(w.strip() for w in wrong.split(" | "))
    assert len(ws) == 3, (q, ws)
    return Fact(q, a, ws, key if key is not None else a, note)


def T(lang: str, title: str, passage: str, *facts: Fact) -> Topic:
    """A topic: one sentence per line of `passage`."""
    sents = [s.strip() for s in textwrap.dedent(passage).strip().splitlines() if s.strip()]
    return Topic(lang, title, sents, list(facts))


def wiki_url(lang: str, title: str) -> str:
    return f"https://{lang}.wikipedia.org/wiki/{title.replace(' ', '_')}"


def join_sents(sents: list[str], lang: str) -> str:
    return ("" if lang in CJK else " ").join(sents)


def n_words(s: str | None) -> int:
    return len(s.split()) if s else 0


def pick(rng: Random, options):
    return options[rng.randrange(len(options))]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def bullets(items, mark: str = "-") -> str:
    return "\n".join(f"{mark} {x}" for x in items)


def numbered(items) -> str:
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))


def trim(s: str, n: int = 70) -> str:
    return s if len(s) <= n else s[: n - 1].rsplit(" ", 1)[0] + "…"


# --------------------------------------------------------------------------------------------------
# Topic passages (seed texts) and facts, written for this sample. One sentence per line.
# --------------------------------------------------------------------------------------------------

EN_TOPICS = [
    T(
        "en",
        "Danube",
        """
        The Danube is the second-longest river in Europe after the Volga, running for roughly 2,850 kilometres.
        It rises in the Black Forest of southwestern Germany, where two small streams, the Brigach and the Breg, join near Donaueschingen.
        From there it flows generally eastward and passes through or along the borders of ten countries, more than any other river in the world.
        Four national capitals stand on its banks: Vienna, Bratislava, Budapest and Belgrade.
        For centuries the river served as a frontier, and for a long stretch it marked the northern edge of the Roman Empire.
        Today it is an important shipping route, linked to the Rhine and the North Sea by the Main-Danube Canal, which opened in 1992.
        Near its mouth the river splits into several branches and forms the Danube Delta, one of the largest wetlands in Europe.
        The delta, shared by Romania and Ukraine, is home to hundreds of bird species and was listed as a UNESCO World Heritage Site in 1991.
        The river finally empties into the Black Sea.
        """,
        F("How many countries does the Danube flow through?", "ten", "six | eight | twelve", "ten countries"),
        F(
            "Which capital cities lie on the Danube?",
            "Vienna, Bratislava, Budapest and Belgrade",
            "Vienna, Prague, Budapest and Belgrade | Berlin, Vienna, Budapest and Bucharest | Vienna, Bratislava, Zagreb and Sofia",
            "Four national capitals",
            "Prague sits on the Vltava, not the Danube, which is a classic mix-up.",
        ),
        F(
            "Where does the Danube begin?",
            "in the Black Forest in southwestern Germany",
            "in the Swiss Alps | in the Carpathian Mountains | in the Bavarian Alps",
            "Black Forest",
            "It is the Rhine, not the Danube, that rises in the Swiss Alps.",
        ),
        F(
            "Which sea does the Danube flow into?",
            "the Black Sea",
            "the Adriatic Sea | the Aegean Sea | the Caspian Sea",
            "empties into the Black Sea",
        ),
        F("When did the Main-Danube Canal open?", "in 1992", "in 1958 | in 1972 | in 2001", "1992"),
    ),
    T(
        "en",
        "Photosynthesis",
        """
        Photosynthesis is the process by which plants, algae and some bacteria turn light energy into chemical energy.
        In plants it takes place mainly in the leaves, inside small structures called chloroplasts.
        The green pigment chlorophyll absorbs mostly red and blue light and reflects green, which is why leaves look green to us.
        The overall reaction combines carbon dioxide and water to produce glucose and oxygen.
        In simplified form it is often written as 6 CO2 + 6 H2O → C6H12O6 + 6 O2.
        The process has two linked stages: the light-dependent reactions, which split water and release oxygen, and the Calvin cycle, which fixes carbon into sugars.
        The oxygen we breathe comes from the splitting of water molecules, not from the carbon dioxide.
        The key enzyme of carbon fixation, RuBisCO, is often described as the most abundant protein on Earth.
        Photosynthesis underpins almost every food chain and, over billions of years, built up the oxygen in the atmosphere.
        """,
        F(
            "Where in a plant cell does photosynthesis happen?",
            "in the chloroplasts",
            "in the mitochondria | in the nucleus | in the cell wall",
            "chloroplasts",
            "Mitochondria are where cellular respiration happens, so they are the usual wrong answer.",
        ),
        F(
            "Why are leaves green?",
            "because chlorophyll absorbs mostly red and blue light and reflects green",
            "because chlorophyll absorbs green light | because of the water stored in the cells | because of carotenoid pigments",
            "reflects green",
        ),
        F(
            "Where does the oxygen released in photosynthesis come from?",
            "from the splitting of water molecules",
            "from the carbon dioxide | from the glucose | from minerals in the soil",
            "splitting of water",
            "Experiments with isotope-labelled water in the early 1940s are what settled this.",
        ),
        F(
            "What are the two stages of photosynthesis?",
            "the light-dependent reactions and the Calvin cycle",
            "glycolysis and the Krebs cycle | transcription and translation | diffusion and osmosis",
            "two linked stages",
        ),
        F(
            "Which enzyme fixes carbon during photosynthesis?",
            "RuBisCO",
            "amylase | ATP synthase | catalase",
            "RuBisCO",
        ),
    ),
    T(
        "en",
        "Printing press",
        """
        Johannes Gutenberg was a goldsmith from Mainz who developed a printing system with movable metal type around 1440.
        His method combined several elements: a hand mould for casting letters quickly, an alloy of lead, tin and antimony, an oil-based ink, and a screw press adapted from those used for wine and paper.
        Movable type had existed earlier in East Asia, including ceramic type in China and metal type in Korea, but Gutenberg's system proved especially well suited to alphabetic scripts.
        His best-known work is the Gutenberg Bible, completed around 1455 in Mainz.
        About 180 copies are thought to have been printed, and fewer than fifty survive today, some on vellum and most on paper.
        Printing spread quickly: by 1500 presses were at work in more than two hundred European towns.
        Books became cheaper, and printed pamphlets played a major role in the spread of the Reformation.
        Gutenberg himself did not grow rich; a lawsuit brought by his financial backer Johann Fust cost him much of his workshop.
        """,
        F(
            "In which city did Gutenberg develop his printing press?",
            "Mainz",
            "Strasbourg | Cologne | Nuremberg",
            "Mainz",
            "He did spend some years in Strasbourg, which is why that city shows up as a tempting alternative.",
        ),
        F(
            "Roughly when was the Gutenberg Bible completed?",
            "around 1455",
            "around 1380 | around 1492 | around 1520",
            "1455",
        ),
        F(
            "What metal alloy did Gutenberg use for his type?",
            "an alloy of lead, tin and antimony",
            "bronze | brass, an alloy of copper and zinc | cast iron",
            "antimony",
        ),
        F(
            "Where had movable type been used before Gutenberg?",
            "in East Asia, in China and Korea",
            "in ancient Rome | in Byzantium | nowhere, he was the first",
            "East Asia",
        ),
        F(
            "Who was Gutenberg's financial backer?",
            "Johann Fust",
            "Aldus Manutius | William Caxton | Albrecht Dürer",
            "Johann Fust",
        ),
    ),
    T(
        "en",
        "Western honey bee",
        """
        A honeybee colony is built around a single queen, who can lay up to around 2,000 eggs a day in peak season.
        Most of the colony consists of female worker bees, which clean the hive, nurse larvae, build comb and forage for nectar and pollen.
        Male bees, called drones, do not sting, and their main role is to mate with a queen from another colony.
        Worker bees communicate the location of food through the waggle dance, a figure-of-eight movement on the comb.
        The angle of the waggle run relative to vertical indicates the direction of the food relative to the sun, and its duration signals the distance.
        The Austrian scientist Karl von Frisch decoded this dance and shared the Nobel Prize in Physiology or Medicine in 1973.
        Honey is made from nectar that bees partly digest and then dry by fanning their wings until the water content falls below about twenty percent.
        A worker bee lives only about five to six weeks in summer, but workers raised in autumn can survive through the winter.
        Beyond honey, bees are vital pollinators for many fruit, nut and vegetable crops.
        """,
        F(
            "How do honeybees tell each other where food is?",
            "through the waggle dance",
            "by leaving scent trails on the ground | by buzzing at different pitches | by flying in formation",
            "waggle dance",
        ),
        F(
            "Who decoded the honeybee waggle dance?",
            "Karl von Frisch",
            "Konrad Lorenz | Nikolaas Tinbergen | Jean-Henri Fabre",
            "Karl von Frisch",
            "Lorenz and Tinbergen shared the same 1973 Nobel Prize, which makes them easy to confuse with him.",
        ),
        F(
            "What is the main role of drone bees?",
            "to mate with a queen from another colony",
            "guarding the hive entrance | producing royal jelly | collecting pollen",
            "drones",
        ),
        F(
            "How long does a worker honeybee live in summer?",
            "about five to six weeks",
            "about three days | about one year | about five years",
            "five to six weeks",
        ),
        F(
            "How many eggs can a queen bee lay in a day?",
            "up to around 2,000",
            "about 20 | about 200 | more than 50,000",
            "2,000",
        ),
    ),
    T(
        "en",
        "Mount Vesuvius",
        """
        Mount Vesuvius is a stratovolcano on the Gulf of Naples in southern Italy.
        It is best known for the eruption of 79 AD, which buried the Roman towns of Pompeii and Herculaneum.
        Pompeii was covered by falling ash and pumice, while Herculaneum was engulfed by pyroclastic flows, which preserved wooden objects and even food.
        An eyewitness account survives in two letters written by Pliny the Younger to the historian Tacitus.
        His uncle, Pliny the Elder, died during an attempt to rescue people by ship across the bay.
        The style of eruption he described, with a tall column of gas and ash, is now called a Plinian eruption.
        Vesuvius has erupted many times since; its most recent eruption was in 1944, during the Second World War.
        Around three million people live near the volcano, which makes it one of the most closely monitored in the world.
        The Vesuvius Observatory, founded in 1841, is the oldest volcano observatory in the world.
        """,
        F(
            "Which Roman towns were destroyed by Vesuvius in 79 AD?",
            "Pompeii and Herculaneum",
            "Ostia and Capua | Pompeii and Paestum | Herculaneum and Syracuse",
        ),
        F(
            "When did Vesuvius last erupt?",
            "in 1944",
            "in 1631 | in 1906 | in 1980",
            "1944",
            "1631 and 1906 were also major eruptions, which is why those dates float around.",
        ),
        F(
            "Who wrote the eyewitness account of the 79 AD eruption of Vesuvius?",
            "Pliny the Younger",
            "Pliny the Elder | Tacitus | Seneca",
            "Pliny the Younger",
            "Pliny the Elder is the uncle who died in the rescue attempt; Tacitus was the recipient of the letters.",
        ),
        F(
            "What is a Plinian eruption named after?",
            "Pliny the Younger, who described the eruption of 79 AD",
            "the Roman god Pluto | the town of Plinia near Naples | a nineteenth-century geologist",
            "Plinian",
        ),
        F(
            "What is the oldest volcano observatory in the world?",
            "the Vesuvius Observatory, founded in 1841",
            "the Hawaiian Volcano Observatory | the Etna Observatory | the Kamchatka Volcanic Station",
            "1841",
        ),
    ),
    T(
        "en",
        "Rosetta Stone",
        """
        The Rosetta Stone is a granodiorite slab inscribed with a decree issued in Memphis in 196 BC on behalf of King Ptolemy V.
        The same text appears three times: in Egyptian hieroglyphs, in Demotic script and in ancient Greek.
        French soldiers found the stone in 1799 near the town of Rashid, known to Europeans as Rosetta, in the Nile Delta.
        After the British defeated the French in Egypt, the stone passed to Britain under the Treaty of Alexandria in 1801.
        It has been displayed in the British Museum in London since 1802.
        Because scholars could read the Greek, the stone offered a key to the two Egyptian scripts.
        Thomas Young made early progress, showing that some hieroglyphs wrote sounds.
        Jean-François Champollion announced his decipherment in 1822, demonstrating that the script mixed phonetic and ideographic signs.
        The stone's name has since become a byword for any key that unlocks a difficult problem.
        """,
        F(
            "What three scripts are on the Rosetta Stone?",
            "Egyptian hieroglyphs, Demotic and ancient Greek",
            "hieroglyphs, Latin and Greek | hieroglyphs, Coptic and Arabic | Demotic, Hebrew and Greek",
            "Demotic script",
            "Three scripts but only two languages: Egyptian, written in two ways, plus Greek.",
        ),
        F(
            "Who deciphered Egyptian hieroglyphs?",
            "Jean-François Champollion",
            "Thomas Young | Howard Carter | Napoleon Bonaparte",
            "Champollion",
            "Thomas Young deserves partial credit for the early steps, but the decipherment is Champollion's.",
        ),
        F(
            "Where is the Rosetta Stone kept today?",
            "in the British Museum in London",
            "in the Louvre in Paris | in the Egyptian Museum in Cairo | in the Vatican Museums",
            "British Museum",
        ),
        F("When was the Rosetta Stone found?", "in 1799", "in 1768 | in 1822 | in 1882", "1799"),
        F(
            "Whose decree is inscribed on the Rosetta Stone?",
            "King Ptolemy V's",
            "Ramesses II's | Cleopatra VII's | Alexander the Great's",
            "Ptolemy V",
        ),
    ),
    T(
        "en",
        "Tide",
        """
        Tides are the regular rise and fall of sea level caused mainly by the gravitational pull of the Moon and, to a lesser extent, the Sun.
        Most coasts see two high tides and two low tides in a little over a day, because the tidal cycle follows the lunar day of about 24 hours and 50 minutes.
        A bulge of water forms on the side of the Earth facing the Moon, and a second bulge forms on the opposite side.
        When the Sun, Moon and Earth line up at new and full moon, their effects add together to produce spring tides with a larger range.
        When the Sun and Moon pull at right angles, during the quarter moons, the range is smaller; these are called neap tides.
        The name spring tide has nothing to do with the season; it comes from the idea of the water springing up.
        Local geography strongly shapes tides, and some seas, such as the Mediterranean, have only a small tidal range.
        The Bay of Fundy in Canada has some of the highest tides on Earth, with a range that can exceed 15 metres.
        Tidal friction is also slowly lengthening the day and pushing the Moon farther away.
        """,
        F(
            "What causes spring tides?",
            "the Sun, Moon and Earth lining up at new and full moon",
            "the arrival of the spring season | strong onshore winds | the Moon being at its farthest point",
            "produce spring tides",
        ),
        F(
            "Why are there two high tides a day?",
            "because bulges of water form both on the side facing the Moon and on the opposite side",
            "because the Sun and the Moon each cause one | because the Earth wobbles twice a day | because of ocean currents",
            "second bulge",
        ),
        F(
            "Where are the highest tides in the world?",
            "in the Bay of Fundy in Canada",
            "in the Mediterranean | in the Baltic Sea | in the Gulf of Mexico",
            "Bay of Fundy",
        ),
        F(
            "How long is the lunar day that governs the tides?",
            "about 24 hours and 50 minutes",
            "exactly 24 hours | about 12 hours | about 29.5 days",
            "24 hours and 50 minutes",
            "29.5 days is the lunar month, not the lunar day.",
        ),
        F(
            "Where does the name spring tide come from?",
            "the idea of the water springing up, not the season",
            "the spring season | a river in England | freshwater springs along the coast",
            "springing up",
        ),
    ),
    T(
        "en",
        "Edward Jenner",
        """
        In 1796 the English physician Edward Jenner tested an idea that was already circulating among country people: that milkmaids who caught cowpox seemed protected from smallpox.
        He took material from a cowpox sore on the hand of a milkmaid, Sarah Nelmes, and inoculated James Phipps, the eight-year-old son of his gardener.
        Weeks later he exposed the boy to smallpox material, and Phipps did not develop the disease.
        Jenner published his results in 1798, and the procedure spread rapidly across Europe and beyond.
        The word vaccine comes from the Latin vacca, meaning cow, a reminder of the method's origin.
        Before vaccination, a riskier practice called variolation used material from smallpox itself.
        In the twentieth century a coordinated global campaign led by the World Health Organization pursued the disease country by country.
        The last natural case occurred in Somalia in 1977, and in 1980 the World Health Assembly declared smallpox eradicated.
        It remains the only human disease to have been eradicated worldwide.
        """,
        F(
            "Where does the word vaccine come from?",
            "the Latin vacca, meaning cow",
            "the Greek word for protection | the name of a French doctor | the Latin word for needle",
            "vacca",
        ),
        F(
            "Who was the first person Edward Jenner vaccinated?",
            "James Phipps, the eight-year-old son of his gardener",
            "Sarah Nelmes | Louis Pasteur | his own daughter",
            "James Phipps",
            "Sarah Nelmes was the milkmaid who supplied the cowpox material, not the patient.",
        ),
        F(
            "When was smallpox declared eradicated?",
            "in 1980",
            "in 1955 | in 1977 | in 1999",
            "1980",
            "1977 is the year of the last natural case, so it is tempting but not the declaration.",
        ),
        F(
            "What was variolation?",
            "an older, riskier practice that used material from smallpox itself",
            "vaccination with cowpox | a quarantine method | a herbal treatment",
            "variolation",
        ),
        F("In what year did Jenner perform his first vaccination?", "1796", "1776 | 1820 | 1850", "1796"),
    ),
    T(
        "en",
        "Transistor",
        """
        The transistor is a semiconductor device that can amplify signals or switch electric current on and off.
        The first working transistor was demonstrated in December 1947 at Bell Labs in New Jersey by John Bardeen and Walter Brattain.
        Their device, called a point-contact transistor, used a crystal of germanium.
        William Shockley, who led the group, soon designed the more practical junction transistor.
        The three men shared the Nobel Prize in Physics in 1956.
        Transistors replaced bulky and fragile vacuum tubes, making radios, hearing aids and computers smaller and more reliable.
        Silicon later became the dominant material because it works well at higher temperatures and forms a stable oxide layer.
        Modern integrated circuits pack billions of tiny transistors, usually MOSFETs, onto a single chip.
        The steady increase in that number is the subject of Moore's law, an observation first made by Gordon Moore in 1965.
        """,
        F(
            "Who invented the transistor?",
            "John Bardeen and Walter Brattain, in William Shockley's group at Bell Labs",
            "Thomas Edison | Nikola Tesla | Robert Noyce and Jack Kilby",
            "Bardeen and Walter Brattain",
            "Noyce and Kilby belong to the integrated circuit story, about a decade later.",
        ),
        F(
            "What material was the first transistor made from?",
            "germanium",
            "silicon | copper | gallium arsenide",
            "germanium",
            "Silicon took over later, which is why it is the reflex answer.",
        ),
        F(
            "When did the inventors of the transistor receive the Nobel Prize?",
            "in 1956",
            "in 1947 | in 1965 | in 2000",
            "1956",
        ),
        F(
            "What older technology did transistors replace?",
            "vacuum tubes",
            "mechanical relays | magnetic drums | capacitors",
            "vacuum tubes",
        ),
        F(
            "When did Gordon Moore first describe the trend now called Moore's law?",
            "in 1965",
            "in 1947 | in 1971 | in 1989",
            "1965",
        ),
    ),
    T(
        "en",
        "Great Barrier Reef",
        """
        The Great Barrier Reef lies off the coast of Queensland in northeastern Australia.
        It stretches for more than 2,300 kilometres and is made up of nearly 3,000 individual reefs and hundreds of islands.
        It is the largest coral reef system in the world and is often said to be visible from space.
        The reef is built by billions of tiny animals called coral polyps, which live in partnership with algae that supply them with food through photosynthesis.
        When water becomes too warm, corals expel these algae and turn white, a process known as coral bleaching.
        Mass bleaching events have become more frequent since the late 1990s as ocean temperatures have risen.
        The reef supports an enormous range of life, including more than 1,500 species of fish, sea turtles and dugongs.
        It was added to the UNESCO World Heritage List in 1981.
        Much of it is protected within the Great Barrier Reef Marine Park, which is managed in zones that allow different uses.
        """,
        F(
            "Which Australian state is the Great Barrier Reef next to?",
            "Queensland",
            "New South Wales | Western Australia | Victoria",
            "Queensland",
        ),
        F(
            "What is coral bleaching?",
            "corals expelling their algae and turning white when the water gets too warm",
            "fish cleaning the coral surface | a chemical treatment used by divers | a normal winter colour change",
            "coral bleaching",
        ),
        F(
            "How long is the Great Barrier Reef?",
            "more than 2,300 kilometres",
            "about 300 kilometres | about 800 kilometres | more than 9,000 kilometres",
            "2,300",
        ),
        F(
            "When was the Great Barrier Reef listed as a World Heritage Site?",
            "in 1981",
            "in 1975 | in 1992 | in 2004",
            "1981",
        ),
        F(
            "Which animals build the Great Barrier Reef?",
            "coral polyps",
            "sponges | oysters | sea urchins",
            "coral polyps",
        ),
    ),
    T(
        "en",
        "Marie Curie",
        """
        Marie Curie, born Maria Skłodowska in Warsaw in 1867, moved to Paris in 1891 to study physics and mathematics at the Sorbonne.
        Working with her husband Pierre Curie, she investigated the radiation given off by uranium, and she coined the term radioactivity.
        In 1898 the couple announced the discovery of two new elements: polonium, named after her native Poland, and radium.
        In 1903 she shared the Nobel Prize in Physics with Pierre Curie and Henri Becquerel, becoming the first woman to receive a Nobel Prize.
        After Pierre died in a street accident in 1906, she took over his teaching post at the Sorbonne, the first woman to hold such a position there.
        In 1911 she received the Nobel Prize in Chemistry for the discovery of polonium and radium and the isolation of radium.
        She remains the only person to have won Nobel Prizes in two different sciences.
        During the First World War she helped equip mobile X-ray units that came to be called petites Curies.
        She died in 1934 of aplastic anaemia, very likely caused by long exposure to radiation.
        """,
        F(
            "Which elements did Marie Curie discover?",
            "polonium and radium",
            "uranium and thorium | radon and helium | plutonium and radium",
            "polonium",
        ),
        F(
            "What is polonium named after?",
            "Poland, Marie Curie's native country",
            "the Greek word for many | the city of Paris | the North Pole",
            "named after her native Poland",
        ),
        F(
            "In which two sciences did Marie Curie win Nobel Prizes?",
            "physics (1903) and chemistry (1911)",
            "chemistry and medicine | physics and medicine | physics and peace",
            "two different sciences",
        ),
        F(
            "Who shared the 1903 Nobel Prize in Physics with Marie Curie?",
            "Pierre Curie and Henri Becquerel",
            "Albert Einstein and Max Planck | Ernest Rutherford and Pierre Curie | Wilhelm Röntgen and Henri Becquerel",
            "Becquerel",
        ),
        F(
            "What were the petites Curies?",
            "mobile X-ray units used in the First World War",
            "her daughters' nicknames | small radium samples | a French science prize",
            "petites Curies",
        ),
    ),
    T(
        "en",
        "Tea",
        """
        All true tea comes from a single species of plant, Camellia sinensis, an evergreen shrub native to East Asia.
        The plant probably originated in the region where southwestern China borders Myanmar and India.
        Green, oolong and black tea differ mainly in how the leaves are processed, in particular how much they are oxidised.
        Green tea is heated soon after picking to stop oxidation, while black tea is fully oxidised, which darkens the leaves and deepens the flavour.
        Oolong sits in between, being partially oxidised.
        Herbal infusions such as chamomile or peppermint are not technically tea, since they contain no Camellia sinensis.
        Tea drinking was well established in China by the Tang dynasty, when Lu Yu wrote The Classic of Tea in the eighth century.
        Dutch traders brought tea to Europe in the early seventeenth century, and it later became closely associated with British culture.
        Today tea is the most widely consumed drink in the world after water.
        """,
        F(
            "What plant does tea come from?",
            "Camellia sinensis",
            "Ilex paraguariensis | Coffea arabica | Mentha piperita",
            "Camellia sinensis",
            "Ilex paraguariensis is yerba mate, a different plant altogether.",
        ),
        F(
            "What is the difference between green tea and black tea?",
            "how much the leaves are oxidised: green tea hardly at all, black tea fully",
            "they come from different plant species | green tea is only grown in shade | black tea is roasted like coffee",
            "fully oxidised",
        ),
        F(
            "Why isn't chamomile technically a tea?",
            "because it contains no Camellia sinensis",
            "because it contains caffeine | because it is not brewed in hot water | because it grows on trees",
            "chamomile",
        ),
        F("Who wrote The Classic of Tea?", "Lu Yu", "Confucius | Laozi | Li Bai", "Lu Yu"),
        F(
            "Who first brought tea to Europe?",
            "Dutch traders, in the early seventeenth century",
            "British merchants in the 1400s | Marco Polo | Spanish sailors in the 1300s",
            "Dutch traders",
        ),
    ),
    T(
        "en",
        "Plate tectonics",
        """
        Plate tectonics is the theory that Earth's outer shell, the lithosphere, is broken into large plates that move slowly over the underlying mantle.
        The idea grew out of Alfred Wegener's hypothesis of continental drift, which he presented in 1912.
        Wegener pointed to the matching coastlines of South America and Africa and to similar fossils on continents now separated by oceans.
        His proposal was widely rejected at first, largely because he could not explain what force moved the continents.
        In the 1950s and 1960s, mapping of the ocean floor revealed long mid-ocean ridges where new crust forms.
        Magnetic stripes on either side of these ridges showed that the sea floor was spreading outward.
        Plates typically move a few centimetres a year, roughly as fast as fingernails grow.
        Most earthquakes and volcanoes occur along plate boundaries, such as the Pacific Ring of Fire.
        Where two continental plates collide, mountain ranges rise; the Himalayas formed as India pushed into Asia.
        """,
        F(
            "Who proposed continental drift?",
            "Alfred Wegener",
            "Charles Lyell | Harry Hess | James Hutton",
            "Wegener",
            "Harry Hess came later, with seafloor spreading in the early 1960s.",
        ),
        F(
            "Why was continental drift rejected at first?",
            "because Wegener could not explain what force moved the continents",
            "because no matching fossils were found | because the coastlines did not fit | because it contradicted the age of the Earth",
            "rejected",
        ),
        F(
            "How fast do tectonic plates move?",
            "a few centimetres a year",
            "a few metres a year | a few millimetres a century | about a kilometre a year",
            "centimetres a year",
        ),
        F(
            "How were the Himalayas formed?",
            "by India colliding with Asia",
            "by a chain of volcanoes | by glacial erosion | by seafloor spreading",
            "Himalayas",
        ),
        F(
            "What evidence showed that the sea floor was spreading?",
            "magnetic stripes on either side of the mid-ocean ridges",
            "fossils on mountain tops | the shape of coastlines | the saltiness of the oceans",
            "Magnetic stripes",
        ),
    ),
    T(
        "en",
        "Octopus",
        """
        Octopuses are marine molluscs with eight arms, closely related to squid and cuttlefish.
        They have three hearts: two pump blood through the gills, and the third circulates it to the rest of the body.
        Their blood is blue because it carries oxygen with a copper-based protein called haemocyanin rather than the iron-based haemoglobin used by humans.
        An octopus has around 500 million neurons, and roughly two-thirds of them are located in its arms rather than in its central brain.
        Each arm can taste and touch what its suckers grip, and the arms can respond to some stimuli without direction from the brain.
        Octopuses can change the colour and texture of their skin in a fraction of a second using specialised cells called chromatophores.
        In experiments they have opened jars, navigated mazes and recognised individual people.
        Most species live only one to two years, and females usually die soon after their eggs hatch.
        Because they have no bones, an octopus can squeeze through any opening larger than its hard beak.
        """,
        F("How many hearts does an octopus have?", "three", "one | two | eight", "three hearts"),
        F(
            "Why is octopus blood blue?",
            "because it carries oxygen with the copper-based protein haemocyanin",
            "because it uses iron-based haemoglobin | because of the ink sac | because of pigments in its food",
            "haemocyanin",
        ),
        F(
            "Where are most of an octopus's neurons?",
            "in its arms, roughly two-thirds of them",
            "in its central brain | in its eyes | in its gills",
            "two-thirds",
        ),
        F(
            "How long do octopuses live?",
            "usually one to two years",
            "about fifty years | about ten years | a few weeks",
            "one to two years",
        ),
        F(
            "What cells let an octopus change colour?",
            "chromatophores",
            "melanocytes | photophores | osteocytes",
            "chromatophores",
        ),
    ),
    T(
        "en",
        "Silk Road",
        """
        The Silk Road was not a single road but a network of overland and maritime trade routes linking China with Central Asia, the Middle East and Europe.
        Its main overland branches took shape during the Han dynasty, in the second century BC, after the envoy Zhang Qian travelled west.
        Caravans carried silk, tea, porcelain and paper westward, while horses, glassware, silver and wool moved east.
        Goods rarely travelled the whole distance with a single merchant; they passed through many hands and markets along the way.
        Cities such as Samarkand, Bukhara and Kashgar grew rich as stopping points.
        Ideas travelled as well: Buddhism spread from India into China along these routes, and papermaking later spread westward.
        The routes also carried disease, and the Black Death probably reached Europe in the 1340s partly through trade networks.
        The name Silk Road is modern; it was popularised by the German geographer Ferdinand von Richthofen in 1877.
        In 2014 a section of the routes in the Chang'an-Tianshan corridor was listed as a UNESCO World Heritage Site.
        """,
        F(
            "Who coined the term Silk Road?",
            "Ferdinand von Richthofen",
            "Marco Polo | Zhang Qian | Alexander von Humboldt",
            "Richthofen",
        ),
        F(
            "What exactly was the Silk Road?",
            "a network of overland and sea trade routes rather than a single road",
            "a paved Roman highway | a single road from Beijing to Rome | a canal system",
            "network",
        ),
        F(
            "Under which dynasty did the Silk Road take shape?",
            "the Han dynasty",
            "the Ming dynasty | the Tang dynasty | the Qing dynasty",
            "Han dynasty",
        ),
        F(
            "Which religion spread into China along the Silk Road?",
            "Buddhism",
            "Shinto | Jainism | Sikhism",
            "Buddhism",
        ),
        F(
            "Which cities grew rich from Silk Road trade?",
            "Samarkand, Bukhara and Kashgar",
            "Lisbon, Seville and Cádiz | Bergen, Oslo and Trondheim | Cusco, Lima and Quito",
            "Samarkand",
        ),
    ),
    T(
        "en",
        "Lighthouse of Alexandria",
        """
        The Lighthouse of Alexandria, often called the Pharos, stood on a small island of that name at the entrance to the harbour of Alexandria in Egypt.
        It was built in the third century BC under the early Ptolemaic kings and is usually credited to the architect Sostratus of Cnidus.
        Ancient accounts suggest it was more than 100 metres tall, which would have made it one of the tallest human-made structures of its time.
        It was built in three stages: a square base, an octagonal middle section and a cylindrical top.
        At night a fire burned at the summit, and according to some accounts a mirror reflected its light far out to sea.
        It was counted among the Seven Wonders of the Ancient World and, unlike most of them, kept working for many centuries.
        A series of earthquakes between the tenth and fourteenth centuries damaged the tower and eventually left it in ruins.
        In the 1470s the Mamluk sultan Qaitbay built a fortress on the site, partly reusing its stones.
        The word for lighthouse in several languages, such as French phare and Italian faro, comes from the name Pharos.
        """,
        F(
            "Where did the Lighthouse of Alexandria stand?",
            "on the island of Pharos, at the entrance to the harbour of Alexandria in Egypt",
            "on the island of Rhodes | in the port of Athens | in Carthage",
            "harbour of Alexandria",
        ),
        F(
            "Who designed the Lighthouse of Alexandria?",
            "Sostratus of Cnidus",
            "Imhotep | Phidias | Vitruvius",
            "Sostratus",
        ),
        F(
            "What destroyed the Lighthouse of Alexandria?",
            "a series of earthquakes between the tenth and fourteenth centuries",
            "a fire started by Julius Caesar | Napoleon's artillery | a single storm in 365 AD",
            "earthquakes",
        ),
        F(
            "Why is a lighthouse called phare in French?",
            "because the word comes from Pharos, the Lighthouse of Alexandria",
            "from the Latin word for fire | from a French engineer named Phare | from the Greek word for ship",
            "phare",
        ),
        F(
            "What was built on the site of the Lighthouse of Alexandria?",
            "a fortress built by the Mamluk sultan Qaitbay in the 1470s",
            "a cathedral | the Library of Alexandria | a modern lighthouse",
            "Qaitbay",
        ),
    ),
    T(
        "en",
        "Metric system",
        """
        The metric system was developed in France in the 1790s, during the French Revolution, as a rational replacement for hundreds of local units.
        The metre was originally defined as one ten-millionth of the distance from the North Pole to the equator along the meridian through Paris.
        To measure that distance, the astronomers Jean-Baptiste Delambre and Pierre Méchain surveyed the arc between Dunkirk and Barcelona over several years.
        The kilogram was tied to the mass of one litre of water, and units were related to each other by powers of ten.
        A platinum metre bar and a platinum kilogram cylinder were deposited in the French national archives in 1799.
        In 1875 seventeen nations signed the Metre Convention, creating an international bureau near Paris to look after the standards.
        The modern International System of Units, or SI, was established in 1960.
        Since 1983 the metre has been defined by the distance light travels in a vacuum in 1/299,792,458 of a second.
        In 2019 the kilogram too was redefined, using the Planck constant instead of a physical object.
        """,
        F(
            "How was the metre originally defined?",
            "as one ten-millionth of the distance from the North Pole to the equator along the Paris meridian",
            "as the length of a king's foot | as the length of a pendulum beating once a second | as the distance light travels in 1/299,792,458 of a second",
            "ten-millionth",
            "A seconds pendulum was seriously considered in the 1790s but not adopted; the light-based definition only dates from 1983.",
        ),
        F(
            "Which two astronomers measured the meridian arc for the metre?",
            "Delambre and Méchain",
            "Laplace and Lagrange | Cassini and Halley | Lavoisier and Coulomb",
            "Delambre",
        ),
        F("When was the SI established?", "in 1960", "in 1799 | in 1875 | in 1983", "1960"),
        F(
            "How is the kilogram defined today?",
            "by fixing the value of the Planck constant, since 2019",
            "by a platinum-iridium cylinder near Paris | by the mass of one litre of water | by counting the atoms in a silicon sphere",
            "Planck constant",
        ),
        F(
            "How many nations signed the Metre Convention in 1875?",
            "seventeen",
            "five | twenty-six | forty-two",
            "seventeen",
        ),
    ),
    T(
        "en",
        "Sourdough",
        """
        Sourdough bread is leavened by a starter, a fermented mixture of flour and water that hosts wild yeasts and lactic acid bacteria.
        The yeasts produce carbon dioxide, which makes the dough rise, while the bacteria produce lactic and acetic acids that give the bread its tang.
        A starter is kept alive by regular feeding: part of it is discarded and replaced with fresh flour and water.
        Before commercial baker's yeast became widespread in the nineteenth century, most leavened bread was made this way.
        Sourdough fermentation is slower than fermentation with baker's yeast, often taking many hours.
        The acidity helps the bread stay fresh longer and can partly break down compounds in the flour.
        San Francisco became famous for its sourdough during the Gold Rush, and one bacterium common in starters was originally named Lactobacillus sanfranciscensis.
        Bakers judge a starter's readiness by how much it rises after feeding and by its smell.
        Many bakers keep the same starter for years, and some claim theirs are decades old.
        """,
        F(
            "What makes sourdough bread rise?",
            "wild yeasts in the starter, which produce carbon dioxide",
            "baking soda | commercial baker's yeast | steam alone",
            "carbon dioxide",
        ),
        F(
            "Why does sourdough taste sour?",
            "because lactic acid bacteria produce lactic and acetic acids",
            "because vinegar is added | because the crust is burnt | because of citric acid from lemons",
            "tang",
        ),
        F(
            "How do you keep a sourdough starter alive?",
            "by regular feeding: discarding part of it and adding fresh flour and water",
            "by freezing it permanently | by adding sugar once a year | by sealing it airtight for good",
            "regular feeding",
        ),
        F(
            "Which bacterium was named after San Francisco?",
            "Lactobacillus sanfranciscensis",
            "Saccharomyces cerevisiae | Escherichia coli | Lactobacillus bulgaricus",
            "sanfranciscensis",
        ),
    ),
]

FR_TOPICS = [
    T(
        "fr",
        "Tour Eiffel",
        """
        La tour Eiffel a été construite pour l'Exposition universelle de 1889, organisée à Paris pour le centenaire de la Révolution française.
        Elle porte le nom de Gustave Eiffel, dont l'entreprise a conçu et bâti l'ouvrage, même si les premiers plans sont dus aux ingénieurs Maurice Koechlin et Émile Nouguier.
        Le chantier a duré un peu plus de deux ans et a mobilisé quelque 18 000 pièces de fer puddlé assemblées par environ 2,5 millions de rivets.
        Haute de 300 mètres à son inauguration, elle est restée la plus haute construction du monde jusqu'à l'achèvement du Chrysler Building à New York en 1930.
        Des artistes et des écrivains ont d'abord protesté contre cette tour « inutile et monstrueuse ».
        Elle devait être démontée au bout de vingt ans, mais son utilité pour les expériences de radiotélégraphie l'a sauvée.
        Elle est repeinte environ tous les sept ans afin de la protéger de la rouille.
        Avec ses antennes, elle mesure aujourd'hui environ 330 mètres.
        C'est l'un des monuments payants les plus visités au monde.
        """,
        F(
            "Pour quel événement la tour Eiffel a-t-elle été construite ?",
            "l'Exposition universelle de 1889",
            "les Jeux olympiques de 1900 | le couronnement de Napoléon III | l'Exposition coloniale de 1931",
            "Exposition universelle",
        ),
        F(
            "Qui a dessiné les premiers plans de la tour Eiffel ?",
            "les ingénieurs Maurice Koechlin et Émile Nouguier",
            "Gustave Eiffel seul | Le Corbusier | Charles Garnier",
            "Koechlin",
        ),
        F(
            "Jusqu'à quand la tour Eiffel a-t-elle été la plus haute construction du monde ?",
            "jusqu'en 1930, avec l'achèvement du Chrysler Building",
            "jusqu'en 1900 | jusqu'en 1973 | jusqu'en 1910",
            "Chrysler",
        ),
        F(
            "Pourquoi la tour Eiffel n'a-t-elle pas été démontée ?",
            "grâce à son utilité pour les expériences de radiotélégraphie",
            "parce que Gustave Eiffel l'a rachetée | parce qu'elle était trop lourde à démonter | à cause de la Première Guerre mondiale",
            "radiotélégraphie",
        ),
        F(
            "Tous les combien la tour Eiffel est-elle repeinte ?",
            "environ tous les sept ans",
            "chaque année | tous les cinquante ans | tous les deux ans",
            "sept ans",
        ),
    ),
    T(
        "fr",
        "Loire",
        """
        La Loire est le plus long fleuve de France, avec un cours d'environ 1 000 kilomètres.
        Elle prend sa source au pied du mont Gerbier-de-Jonc, dans le Massif central, en Ardèche.
        Elle coule d'abord vers le nord, puis s'infléchit vers l'ouest à Orléans avant de rejoindre l'océan Atlantique près de Saint-Nazaire.
        On la surnomme souvent le dernier fleuve sauvage d'Europe, car son cours a été relativement peu aménagé.
        Son débit est très irrégulier : de grandes crues alternent avec des étiages où apparaissent de nombreux bancs de sable.
        La vallée de la Loire et de ses affluents est célèbre pour ses châteaux de la Renaissance, comme Chambord, Chenonceau ou Amboise.
        Le Val de Loire, entre Sully-sur-Loire et Chalonnes, est inscrit au patrimoine mondial de l'UNESCO depuis 2000.
        La région est aussi connue pour ses vins, notamment le muscadet près de Nantes et le sancerre en amont.
        """,
        F(
            "Où la Loire prend-elle sa source ?",
            "au pied du mont Gerbier-de-Jonc, en Ardèche",
            "dans les Alpes | dans le Jura | dans les Vosges",
            "Gerbier",
        ),
        F(
            "Quel est le plus long fleuve de France ?",
            "la Loire",
            "la Seine | le Rhône | la Garonne",
            "plus long fleuve",
        ),
        F(
            "Où la Loire se jette-t-elle dans l'océan ?",
            "près de Saint-Nazaire, dans l'Atlantique",
            "près de Bordeaux | au Havre | près de Brest",
            "Saint-Nazaire",
        ),
        F(
            "Depuis quand le Val de Loire est-il inscrit au patrimoine mondial ?",
            "depuis 2000",
            "depuis 1979 | depuis 1991 | depuis 2012",
            "2000",
        ),
        F(
            "Pourquoi appelle-t-on la Loire le dernier fleuve sauvage d'Europe ?",
            "parce que son cours a été relativement peu aménagé",
            "parce qu'on y trouve encore des ours | parce qu'elle n'a jamais été navigable | parce qu'elle change de lit chaque année",
            "sauvage",
        ),
    ),
    T(
        "fr",
        "Louis Pasteur",
        """
        Louis Pasteur, né en 1822 à Dole, dans le Jura, était un chimiste et biologiste français.
        Ses travaux ont montré que la fermentation est due à l'action de micro-organismes et non à une réaction purement chimique.
        Il a ainsi contribué à réfuter la théorie de la génération spontanée, notamment grâce à ses expériences avec des flacons à col de cygne.
        Il a mis au point un procédé de chauffage modéré destiné à conserver le vin et la bière, appelé depuis pasteurisation.
        Il a également étudié les maladies du ver à soie, qui menaçaient l'industrie de la soie dans le sud de la France.
        En 1885, il a administré un vaccin contre la rage au jeune Joseph Meister, mordu par un chien enragé, qui a survécu.
        Ce succès a conduit à la création de l'Institut Pasteur, inauguré à Paris en 1888.
        Pasteur est mort en 1895 ; il repose dans une crypte au sein de l'Institut.
        """,
        F("Où est né Louis Pasteur ?", "à Dole, dans le Jura", "à Paris | à Lyon | à Strasbourg", "Dole"),
        F(
            "Qu'est-ce que la pasteurisation ?",
            "un chauffage modéré destiné à conserver des liquides comme le vin et la bière",
            "une méthode de vaccination | un procédé de congélation rapide | une technique de filtrage de l'eau",
            "pasteurisation",
        ),
        F(
            "Comment s'appelait l'enfant vacciné contre la rage par Pasteur en 1885 ?",
            "Joseph Meister",
            "Jean-Baptiste Jupille | Émile Roux | Claude Bernard",
            "Joseph Meister",
            "Jupille a été le deuxième patient, quelques mois plus tard ; Émile Roux était un collaborateur de Pasteur.",
        ),
        F("Quand l'Institut Pasteur a-t-il été inauguré ?", "en 1888", "en 1822 | en 1870 | en 1905", "1888"),
        F(
            "Quelle théorie Pasteur a-t-il contribué à réfuter ?",
            "la théorie de la génération spontanée",
            "la théorie de l'évolution | la théorie atomique | la théorie des germes",
            "génération spontanée",
            "Il a au contraire soutenu la théorie des germes, d'où le piège.",
        ),
    ),
    T(
        "fr",
        "Mont-Saint-Michel",
        """
        Le Mont-Saint-Michel est une île rocheuse située dans la baie du même nom, à la limite entre la Normandie et la Bretagne.
        Selon la tradition, l'évêque d'Avranches, Aubert, y fit construire un premier sanctuaire en 708 après une apparition de l'archange saint Michel.
        Au fil des siècles, une abbaye bénédictine s'est élevée au sommet du rocher, et un village fortifié s'est développé à ses pieds.
        Pendant la guerre de Cent Ans, la place forte a résisté aux assauts anglais sans jamais être prise.
        Après la Révolution, l'abbaye a servi de prison jusqu'en 1863.
        La baie connaît certaines des plus fortes marées d'Europe, avec un marnage qui peut dépasser 14 mètres.
        Une digue-route construite en 1879 favorisait l'ensablement ; elle a été remplacée en 2014 par un pont-passerelle afin que la mer entoure de nouveau le Mont.
        Le site, avec sa baie, est inscrit au patrimoine mondial de l'UNESCO depuis 1979.
        """,
        F(
            "Entre quelles régions se trouve le Mont-Saint-Michel ?",
            "entre la Normandie et la Bretagne",
            "entre la Bretagne et les Pays de la Loire | entre la Picardie et la Normandie | entre l'Alsace et la Lorraine",
            "Normandie",
        ),
        F(
            "Que s'est-il passé au Mont-Saint-Michel pendant la guerre de Cent Ans ?",
            "la place forte a résisté aux Anglais sans jamais être prise",
            "elle a été prise par les Anglais en 1420 | elle a été abandonnée | elle a été transformée en port militaire",
            "guerre de Cent Ans",
        ),
        F(
            "À quoi a servi l'abbaye après la Révolution ?",
            "de prison, jusqu'en 1863",
            "de caserne | d'hôpital | d'école",
            "prison",
        ),
        F(
            "Pourquoi a-t-on remplacé la digue par un pont-passerelle ?",
            "pour lutter contre l'ensablement et que la mer entoure de nouveau le Mont",
            "pour accueillir plus de voitures | parce que la digue s'était effondrée | pour construire une voie ferrée",
            "pont-passerelle",
        ),
        F(
            "Qui aurait fondé le premier sanctuaire du Mont-Saint-Michel ?",
            "l'évêque Aubert d'Avranches, en 708",
            "Charlemagne | Guillaume le Conquérant | Saint Louis",
            "Aubert",
        ),
    ),
    T(
        "fr",
        "Baguette",
        """
        La baguette est un pain long et fin, devenu l'un des symboles de la France.
        Elle se compose en principe de quatre ingrédients : farine de blé, eau, sel et levure ou levain.
        Selon un décret de 1993, la « baguette de tradition française » ne doit contenir aucun additif et ne peut pas être surgelée.
        Sa forme allongée permet d'obtenir beaucoup de croûte par rapport à la mie.
        On estime que plusieurs milliards de baguettes sont vendues chaque année en France.
        Chaque année, un concours désigne la meilleure baguette de Paris, et le lauréat fournit le palais de l'Élysée pendant un an.
        En 2022, les savoir-faire artisanaux et la culture de la baguette de pain ont été inscrits au patrimoine culturel immatériel de l'UNESCO.
        Les origines exactes de la baguette restent débattues, et plusieurs légendes circulent à son sujet.
        """,
        F(
            "Quels sont les ingrédients d'une baguette ?",
            "farine de blé, eau, sel et levure ou levain",
            "farine, lait, beurre et sucre | farine, œufs, eau et sel | farine de seigle, eau et huile",
            "quatre ingrédients",
        ),
        F(
            "Qu'impose le décret de 1993 pour la baguette de tradition ?",
            "aucun additif et pas de surgélation",
            "une longueur d'un mètre | l'usage exclusif de farine bio | une cuisson au feu de bois",
            "1993",
        ),
        F(
            "Quand la baguette a-t-elle été inscrite au patrimoine immatériel de l'UNESCO ?",
            "en 2022",
            "en 2008 | en 2015 | en 2019",
            "2022",
        ),
        F(
            "Que gagne le vainqueur du concours de la meilleure baguette de Paris ?",
            "le droit de fournir le palais de l'Élysée pendant un an",
            "une médaille de la Ville de Rome | une boulangerie offerte | un voyage autour du monde",
            "Élysée",
        ),
    ),
]

DE_TOPICS = [
    T(
        "de",
        "Rhein",
        """
        Der Rhein ist einer der wirtschaftlich wichtigsten Flüsse Europas und rund 1.230 Kilometer lang.
        Er entspringt in den Schweizer Alpen im Kanton Graubünden, wo sich Vorderrhein und Hinterrhein vereinigen.
        Anschließend durchfließt er den Bodensee und stürzt bei Schaffhausen über den Rheinfall, den wasserreichsten Wasserfall Mitteleuropas.
        Zwischen Basel und Karlsruhe bildet er auf einer langen Strecke die Grenze zwischen Deutschland und Frankreich.
        Im engen Mittelrheintal zwischen Bingen und Koblenz liegt der Loreley-Felsen, um den sich zahlreiche Sagen ranken.
        Dieses Tal mit seinen Burgen und Weinbergen gehört seit 2002 zum UNESCO-Welterbe.
        Der Rhein ist eine der meistbefahrenen Binnenwasserstraßen der Welt, und nahe seiner Mündung liegt der Hafen von Rotterdam.
        In den Niederlanden teilt er sich in mehrere Arme und mündet schließlich in die Nordsee.
        """,
        F(
            "Wo entspringt der Rhein?",
            "in den Schweizer Alpen im Kanton Graubünden",
            "im Schwarzwald | in den Vogesen | im Harz",
            "Graubünden",
            "Im Schwarzwald entspringt die Donau, nicht der Rhein.",
        ),
        F(
            "In welches Meer mündet der Rhein?",
            "in die Nordsee",
            "in die Ostsee | ins Schwarze Meer | ins Mittelmeer",
            "Nordsee",
        ),
        F(
            "Wie heißt der berühmte Felsen im Mittelrheintal?",
            "die Loreley",
            "der Königsstuhl | die Bastei | der Watzmann",
            "Loreley",
        ),
        F(
            "Seit wann ist das Mittelrheintal UNESCO-Welterbe?",
            "seit 2002",
            "seit 1978 | seit 1990 | seit 2015",
            "2002",
        ),
        F(
            "Was ist der Rheinfall?",
            "der wasserreichste Wasserfall Mitteleuropas, bei Schaffhausen",
            "ein Stausee bei Basel | eine Schleuse bei Koblenz | ein Nebenfluss in Holland",
            "Rheinfall",
        ),
    ),
    T(
        "de",
        "Johann Sebastian Bach",
        """
        Johann Sebastian Bach wurde 1685 in Eisenach in eine weitverzweigte Musikerfamilie geboren.
        Nach Stationen unter anderem in Arnstadt, Weimar und Köthen wurde er 1723 Thomaskantor in Leipzig.
        In diesem Amt war er für die Musik an den Hauptkirchen der Stadt und für die Ausbildung der Thomaner verantwortlich.
        In Leipzig entstanden zahlreiche Kantaten sowie die Johannes-Passion und die Matthäus-Passion.
        Zu seinen bekanntesten Instrumentalwerken gehören die Brandenburgischen Konzerte und das Wohltemperierte Klavier.
        Zu Lebzeiten galt Bach vor allem als hervorragender Organist; als Komponist war er außerhalb seines Umfelds weniger bekannt.
        Er starb 1750 in Leipzig, und sein Grab befindet sich heute in der Thomaskirche.
        Eine breite Wiederentdeckung seiner Musik begann 1829, als Felix Mendelssohn Bartholdy die Matthäus-Passion in Berlin aufführte.
        Mehrere seiner Söhne, darunter Carl Philipp Emanuel und Johann Christian, wurden selbst bedeutende Komponisten.
        """,
        F(
            "Wo wurde Johann Sebastian Bach geboren?",
            "in Eisenach",
            "in Leipzig | in Weimar | in Hamburg",
            "Eisenach",
        ),
        F(
            "Seit wann war Bach Thomaskantor in Leipzig?",
            "seit 1723",
            "seit 1700 | seit 1740 | seit 1685",
            "1723",
        ),
        F(
            "Wer leitete die Wiederentdeckung von Bachs Musik ein?",
            "Felix Mendelssohn Bartholdy mit seiner Aufführung der Matthäus-Passion 1829",
            "Ludwig van Beethoven | Richard Wagner | Georg Friedrich Händel",
            "Mendelssohn",
        ),
        F(
            "Wo liegt Bach begraben?",
            "in der Thomaskirche in Leipzig",
            "in der Frauenkirche in Dresden | im Stephansdom in Wien | in der Georgenkirche in Eisenach",
            "Grab",
        ),
        F(
            "Wofür war Bach zu Lebzeiten vor allem bekannt?",
            "als hervorragender Organist",
            "als Opernkomponist | als Geigenbauer | als Hofkapellmeister in Paris",
            "Organist",
        ),
    ),
    T(
        "de",
        "Berliner Mauer",
        """
        Die Berliner Mauer wurde ab dem 13. August 1961 von der DDR-Führung errichtet.
        Offiziell als „antifaschistischer Schutzwall“ bezeichnet, sollte sie vor allem die Flucht der eigenen Bevölkerung in den Westen verhindern.
        Die Grenzanlagen um West-Berlin waren insgesamt rund 155 Kilometer lang und bestanden aus Mauern, Zäunen, Wachtürmen und einem Todesstreifen.
        Mindestens 140 Menschen kamen an der Mauer ums Leben, die meisten bei Fluchtversuchen.
        Der bekannteste Grenzübergang war der Checkpoint Charlie in der Friedrichstraße.
        Am Abend des 9. November 1989 verkündete Günter Schabowski auf einer Pressekonferenz überraschend eine neue Reiseregelung.
        Noch in derselben Nacht strömten Tausende an die Grenzübergänge, und die Grenze wurde geöffnet.
        Weniger als ein Jahr später, am 3. Oktober 1990, wurde Deutschland wiedervereinigt.
        Die East Side Gallery ist heute der längste erhaltene Abschnitt der Mauer.
        """,
        F(
            "Wann wurde die Berliner Mauer gebaut?",
            "ab dem 13. August 1961",
            "1949 | 1953 | 1968",
            "13. August 1961",
        ),
        F(
            "Wann fiel die Berliner Mauer?",
            "am 9. November 1989",
            "am 3. Oktober 1990 | am 17. Juni 1953 | am 13. August 1989",
            "9. November 1989",
            "Der 3. Oktober 1990 ist der Tag der Wiedervereinigung, nicht des Mauerfalls.",
        ),
        F(
            "Wie lang waren die Grenzanlagen um West-Berlin?",
            "rund 155 Kilometer",
            "rund 15 Kilometer | rund 43 Kilometer | rund 1.400 Kilometer",
            "155",
            "Rund 43 Kilometer betrug nur der innerstädtische Abschnitt, rund 1.400 Kilometer die innerdeutsche Grenze.",
        ),
        F(
            "Wer verkündete am 9. November 1989 die neue Reiseregelung?",
            "Günter Schabowski",
            "Erich Honecker | Helmut Kohl | Michail Gorbatschow",
            "Schabowski",
        ),
        F(
            "Was ist die East Side Gallery?",
            "der längste erhaltene Abschnitt der Berliner Mauer",
            "ein Museum in Bonn | ein Einkaufszentrum am Potsdamer Platz | ein Grenzübergang in der Friedrichstraße",
            "East Side Gallery",
        ),
    ),
    T(
        "de",
        "Schwarzwald",
        """
        Der Schwarzwald ist ein Mittelgebirge im Südwesten Baden-Württembergs.
        Seinen Namen verdankt er den dichten Nadelwäldern, die ihn von Weitem dunkel erscheinen lassen.
        Der höchste Gipfel ist der Feldberg mit 1.493 Metern.
        Bei Donaueschingen fließen Brigach und Breg zusammen, die als Quellflüsse der Donau gelten.
        Im 18. Jahrhundert entwickelte sich im Schwarzwald eine bedeutende Uhrenherstellung, aus der die Kuckucksuhr hervorging.
        Auch der Bollenhut mit seinen roten Wollkugeln stammt aus der Region, genauer aus der Gegend um Gutach.
        Zu den kulinarischen Spezialitäten zählen der Schwarzwälder Schinken und die Schwarzwälder Kirschtorte.
        Seit 2014 schützt der Nationalpark Schwarzwald einen Teil des nördlichen Gebirges.
        """,
        F("Wie hoch ist der Feldberg?", "1.493 Meter", "2.962 Meter | 1.141 Meter | 983 Meter", "1.493"),
        F(
            "Woher hat der Schwarzwald seinen Namen?",
            "von den dichten Nadelwäldern, die ihn dunkel erscheinen lassen",
            "vom schwarzen Vulkangestein | von einer mittelalterlichen Schlacht | vom Fluss Schwarza",
            "Namen",
        ),
        F(
            "Welche Flüsse gelten als Quellflüsse der Donau?",
            "Brigach und Breg",
            "Neckar und Enz | Kinzig und Murg | Iller und Lech",
            "Brigach",
        ),
        F(
            "Seit wann gibt es den Nationalpark Schwarzwald?",
            "seit 2014",
            "seit 1970 | seit 1999 | seit 2020",
            "2014",
        ),
        F(
            "Woher stammt der Bollenhut?",
            "aus der Gegend um Gutach im Schwarzwald",
            "aus dem Allgäu | aus Ostfriesland | aus dem Spreewald",
            "Bollenhut",
        ),
    ),
    T(
        "de",
        "Albert Einstein",
        """
        Albert Einstein wurde am 14. März 1879 in Ulm geboren und wuchs in München auf.
        1905, in seinem sogenannten Wunderjahr, veröffentlichte er als Angestellter des Berner Patentamts vier bahnbrechende Arbeiten.
        Darin erklärte er unter anderem den photoelektrischen Effekt und die Brownsche Bewegung und begründete die spezielle Relativitätstheorie.
        Aus dieser Zeit stammt auch die berühmte Formel E = mc², die die Äquivalenz von Masse und Energie beschreibt.
        1915 legte er die allgemeine Relativitätstheorie vor, die die Gravitation als Krümmung der Raumzeit deutet.
        Den Nobelpreis für Physik erhielt er für das Jahr 1921, und zwar ausdrücklich für die Erklärung des photoelektrischen Effekts, nicht für die Relativitätstheorie.
        1933 kehrte er von einer Reise in die USA nicht nach Deutschland zurück und arbeitete danach in Princeton.
        Er starb 1955 in Princeton.
        """,
        F("Wo wurde Albert Einstein geboren?", "in Ulm", "in München | in Bern | in Berlin", "Ulm"),
        F(
            "Wofür erhielt Einstein den Nobelpreis?",
            "für die Erklärung des photoelektrischen Effekts",
            "für die Relativitätstheorie | für die Formel E = mc² | für die Entdeckung des Elektrons",
            "ausdrücklich",
            "Die Relativitätstheorie war damals noch umstritten – deshalb die ausdrückliche Begründung.",
        ),
        F(
            "Wo arbeitete Einstein im Jahr 1905?",
            "am Patentamt in Bern",
            "an der Universität Berlin | in Princeton | in Göttingen",
            "Patentamts",
        ),
        F(
            "Wann stellte Einstein die allgemeine Relativitätstheorie vor?",
            "1915",
            "1905 | 1921 | 1933",
            "1915",
        ),
    ),
]

ES_TOPICS = [
    T(
        "es",
        "Alhambra",
        """
        La Alhambra es un conjunto de palacios y fortalezas situado sobre la colina de la Sabika, en Granada.
        Su nombre procede del árabe y significa «la roja», probablemente por el color de sus muros.
        La mayor parte de lo que se conserva fue construida por la dinastía nazarí entre los siglos XIII y XIV.
        Entre sus espacios más célebres están el Patio de los Leones, con su fuente sostenida por doce leones de mármol, y el Patio de los Arrayanes.
        Las paredes están cubiertas de yeserías, azulejos e inscripciones poéticas en árabe.
        En 1492, el último sultán nazarí, Boabdil, entregó la ciudad a los Reyes Católicos.
        Más tarde, el emperador Carlos V mandó levantar dentro del recinto un palacio renacentista.
        Junto al Generalife, la Alhambra fue declarada Patrimonio de la Humanidad por la UNESCO en 1984.
        Hoy es uno de los monumentos más visitados de España.
        """,
        F(
            "¿Qué significa el nombre «Alhambra»?",
            "«la roja», del árabe",
            "«la fortaleza blanca» | «el jardín del sultán» | «la colina sagrada»",
            "la roja",
        ),
        F(
            "¿Qué dinastía construyó la mayor parte de la Alhambra?",
            "la dinastía nazarí",
            "los omeyas de Córdoba | los almohades | los Reyes Católicos",
            "nazarí",
        ),
        F(
            "¿Quién entregó Granada a los Reyes Católicos en 1492?",
            "Boabdil, el último sultán nazarí",
            "Abderramán III | Almanzor | Carlos V",
            "Boabdil",
        ),
        F(
            "¿Cuántos leones sostienen la fuente del Patio de los Leones?",
            "doce",
            "cuatro | ocho | dieciséis",
            "doce leones",
        ),
        F(
            "¿Cuándo fue declarada la Alhambra Patrimonio de la Humanidad?",
            "en 1984",
            "en 1964 | en 1992 | en 2001",
            "1984",
        ),
    ),
    T(
        "es",
        "Don Quijote de la Mancha",
        """
        El ingenioso hidalgo don Quijote de la Mancha es la novela más conocida de Miguel de Cervantes.
        La primera parte se publicó en 1605 y la segunda en 1615, un año antes de la muerte del autor.
        Cuenta la historia de Alonso Quijano, un hidalgo que, de tanto leer libros de caballerías, decide hacerse caballero andante.
        Lo acompaña Sancho Panza, un labrador sencillo y práctico al que promete el gobierno de una ínsula.
        Su caballo se llama Rocinante, y su amada idealizada es Dulcinea del Toboso.
        En uno de los episodios más famosos, don Quijote confunde unos molinos de viento con gigantes y los ataca.
        La obra parodia las novelas de caballerías, pero también reflexiona sobre la realidad, la ficción y la locura.
        Muchos críticos la consideran la primera novela moderna.
        Está entre los libros más traducidos de la historia.
        """,
        F(
            "¿En qué años se publicaron las dos partes del Quijote?",
            "en 1605 y en 1615",
            "en 1547 y en 1616 | en 1492 y en 1500 | en 1615 y en 1630",
            "1605",
        ),
        F(
            "¿Cómo se llama el caballo de don Quijote?",
            "Rocinante",
            "Babieca | Bucéfalo | Clavileño",
            "Rocinante",
            "Babieca es el caballo del Cid, y Clavileño es el caballo de madera de un episodio de la segunda parte.",
        ),
        F(
            "¿Qué confunde don Quijote con gigantes?",
            "unos molinos de viento",
            "unos rebaños de ovejas | unas torres de iglesia | unos árboles",
            "molinos",
            "Los rebaños de ovejas aparecen en otro episodio, en el que los toma por ejércitos.",
        ),
        F(
            "¿Quién acompaña a don Quijote en sus aventuras?",
            "Sancho Panza",
            "Dulcinea del Toboso | Lazarillo de Tormes | el bachiller Sansón Carrasco",
            "Sancho Panza",
        ),
        F(
            "¿Cuál es el verdadero nombre de don Quijote?",
            "Alonso Quijano",
            "Miguel de Cervantes | Sancho Quijano | Alonso de Ercilla",
            "Alonso Quijano",
        ),
    ),
    T(
        "es",
        "Río Amazonas",
        """
        El Amazonas es el río con mayor caudal del mundo y aporta cerca de una quinta parte del agua dulce que los ríos vierten a los océanos.
        Nace en los Andes del Perú y recorre Sudamérica de oeste a este hasta desembocar en el océano Atlántico, en el norte de Brasil.
        Su longitud, de unos 6.400 kilómetros, es objeto de debate, y algunos estudios lo sitúan por delante del Nilo.
        Su cuenca, la mayor del planeta, abarca territorio de varios países, entre ellos Brasil, Perú, Colombia, Bolivia y Ecuador.
        En la estación de lluvias, amplias zonas de selva quedan inundadas durante meses.
        En sus aguas viven el delfín rosado, el pirarucú, uno de los mayores peces de agua dulce, y las pirañas.
        El nombre procede de las amazonas de la mitología griega: el explorador Francisco de Orellana, que lo recorrió en 1542, afirmó haber combatido con mujeres guerreras.
        A lo largo de todo su curso no hay ningún puente que lo cruce.
        """,
        F(
            "¿Dónde nace el río Amazonas?",
            "en los Andes del Perú",
            "en la meseta brasileña | en los Andes de Chile | en el macizo de las Guayanas",
            "Andes del Perú",
        ),
        F(
            "¿De dónde viene el nombre del Amazonas?",
            "de las amazonas de la mitología griega, por el relato de Francisco de Orellana",
            "de una palabra indígena que significa «gran agua» | del nombre de un rey inca | de un explorador portugués",
            "mitología",
        ),
        F(
            "¿Cuántos puentes cruzan el Amazonas?",
            "ninguno",
            "tres | más de veinte | uno, en Manaos",
            "ningún puente",
        ),
        F(
            "¿Qué animales viven en el Amazonas?",
            "el delfín rosado, el pirarucú y las pirañas",
            "pingüinos y focas | cocodrilos del Nilo | tiburones blancos",
            "delfín rosado",
        ),
        F(
            "¿En qué océano desemboca el Amazonas?",
            "en el océano Atlántico",
            "en el Pacífico | en el Índico | en el Ártico",
            "Atlántico",
        ),
    ),
    T(
        "es",
        "Frida Kahlo",
        """
        Frida Kahlo nació en 1907 en Coyoacán, hoy parte de la Ciudad de México, en la casa que después sería conocida como la Casa Azul.
        De niña contrajo poliomielitis, y a los dieciocho años sufrió un grave accidente de autobús que le dejó secuelas de por vida.
        Durante la larga convalecencia empezó a pintar, usando un espejo colocado sobre la cama.
        Buena parte de su obra son autorretratos, en los que combina su experiencia del dolor con símbolos de la cultura popular mexicana.
        En 1929 se casó con el muralista Diego Rivera; se divorciaron en 1939 y volvieron a casarse al año siguiente.
        En 1938 André Breton la presentó como surrealista, aunque ella afirmaba que no pintaba sueños, sino su propia realidad.
        Su cuadro Las dos Fridas, de 1939, muestra dos versiones de sí misma tomadas de la mano.
        Murió en 1954, y la Casa Azul funciona hoy como museo dedicado a su vida y obra.
        """,
        F(
            "¿Dónde nació Frida Kahlo?",
            "en Coyoacán, en la Casa Azul",
            "en Guadalajara | en Oaxaca | en Puebla",
            "Coyoacán",
        ),
        F(
            "¿Con quién se casó Frida Kahlo?",
            "con el muralista Diego Rivera",
            "con José Clemente Orozco | con André Breton | con David Alfaro Siqueiros",
            "Diego Rivera",
        ),
        F(
            "¿Cómo empezó a pintar Frida Kahlo?",
            "durante la convalecencia tras su accidente, con un espejo sobre la cama",
            "en la Academia de San Carlos | como aprendiz de Diego Rivera | en París, con los surrealistas",
            "convalecencia",
        ),
        F(
            "¿Qué respondía Frida Kahlo a quienes la llamaban surrealista?",
            "que no pintaba sueños, sino su propia realidad",
            "que ella había fundado el surrealismo | que solo pintaba paisajes | que el surrealismo era un invento mexicano",
            "propia realidad",
        ),
        F(
            "¿Qué muestra el cuadro Las dos Fridas?",
            "dos versiones de la pintora tomadas de la mano",
            "a Frida y a Diego Rivera | un paisaje de Coyoacán | dos hermanas gemelas",
            "Las dos Fridas",
        ),
    ),
    T(
        "es",
        "Camino de Santiago",
        """
        El Camino de Santiago es una red de rutas de peregrinación que conducen a la catedral de Santiago de Compostela, en Galicia.
        Según la tradición, allí se encuentran los restos del apóstol Santiago el Mayor, descubiertos a comienzos del siglo IX.
        En la Edad Media se convirtió, junto con Roma y Jerusalén, en una de las grandes peregrinaciones de la cristiandad.
        La ruta más transitada es el Camino Francés, que suele empezarse en Saint-Jean-Pied-de-Port, al pie de los Pirineos, y recorre unos 800 kilómetros.
        El símbolo de los peregrinos es la concha de vieira, que también aparece en los mojones que señalan el camino.
        Para obtener la Compostela, el certificado oficial, hay que recorrer al menos los últimos 100 kilómetros a pie o a caballo, o 200 en bicicleta.
        Los peregrinos sellan una credencial en albergues, iglesias y bares a lo largo de la ruta.
        Las rutas españolas fueron declaradas Patrimonio de la Humanidad en 1993, y las francesas en 1998.
        """,
        F(
            "¿Cuál es el símbolo de los peregrinos del Camino de Santiago?",
            "la concha de vieira",
            "la cruz de Malta | la rosa roja | el bastón de olivo",
            "vieira",
        ),
        F(
            "¿Qué hay que hacer para obtener la Compostela?",
            "recorrer al menos los últimos 100 kilómetros a pie o a caballo, o 200 en bicicleta",
            "recorrer el camino completo desde Francia | visitar tres catedrales | pagar una tasa en Roncesvalles",
            "certificado oficial",
        ),
        F(
            "¿Dónde suele empezar el Camino Francés?",
            "en Saint-Jean-Pied-de-Port, al pie de los Pirineos",
            "en Lisboa | en Oviedo | en Sevilla",
            "Saint-Jean",
        ),
        F(
            "¿Qué restos se veneran en Santiago de Compostela?",
            "los del apóstol Santiago el Mayor",
            "los de san Pedro | los del rey Pelayo | los de santa Teresa",
            "apóstol",
        ),
        F(
            "¿Cuándo se declararon Patrimonio de la Humanidad las rutas españolas del Camino?",
            "en 1993",
            "en 1985 | en 2000 | en 2015",
            "1993",
        ),
    ),
]

IT_TOPICS = [
    T(
        "it",
        "Colosseo",
        """
        Il Colosseo, il cui nome originale era Anfiteatro Flavio, si trova nel centro di Roma, vicino al Foro Romano.
        La costruzione fu avviata dall'imperatore Vespasiano intorno al 70 d.C. e l'edificio fu inaugurato da suo figlio Tito nell'80 d.C.
        I lavori furono completati sotto Domiziano, l'altro figlio di Vespasiano.
        Poteva ospitare probabilmente tra i 50.000 e i 70.000 spettatori, che assistevano a combattimenti di gladiatori e a cacce di animali selvatici.
        I giochi inaugurali durarono cento giorni.
        Sotto l'arena si trovava l'ipogeo, un sistema di gallerie e montacarichi da cui uomini e animali potevano comparire all'improvviso.
        Il nome Colosseo deriva probabilmente da una grande statua di Nerone, il Colosso, che sorgeva nelle vicinanze.
        Terremoti e secoli di spoliazioni hanno distrutto parte dell'anello esterno, le cui pietre furono riutilizzate in altri edifici.
        Oggi è uno dei monumenti più visitati al mondo e nel 2007 è stato incluso tra le nuove sette meraviglie del mondo.
        """,
        F(
            "Come si chiamava originariamente il Colosseo?",
            "Anfiteatro Flavio",
            "Circo Massimo | Teatro di Marcello | Anfiteatro Castrense",
            "Anfiteatro Flavio",
        ),
        F(
            "Chi inaugurò il Colosseo?",
            "l'imperatore Tito, nell'80 d.C.",
            "Nerone | Augusto | Adriano",
            "Tito",
        ),
        F(
            "Da dove deriva il nome Colosseo?",
            "probabilmente dalla grande statua di Nerone, il Colosso",
            "dal nome del suo architetto | da un colle di Roma | dalla parola latina per arena",
            "Colosso",
        ),
        F(
            "Che cos'era l'ipogeo del Colosseo?",
            "un sistema di gallerie e montacarichi sotto l'arena",
            "la tribuna dell'imperatore | una piscina per le battaglie navali | il tetto mobile",
            "ipogeo",
        ),
        F(
            "Quanto durarono i giochi inaugurali del Colosseo?",
            "cento giorni",
            "sette giorni | un anno intero | trenta giorni",
            "cento giorni",
        ),
    ),
    T(
        "it",
        "Leonardo da Vinci",
        """
        Leonardo da Vinci nacque nel 1452 ad Anchiano, presso Vinci, in Toscana.
        Si formò a Firenze nella bottega di Andrea del Verrocchio.
        Fu pittore, ingegnere, architetto e studioso della natura, e riempì migliaia di pagine di appunti scritti da destra a sinistra, in una grafia speculare.
        A Milano, al servizio di Ludovico Sforza, dipinse l'Ultima Cena nel refettorio del convento di Santa Maria delle Grazie.
        La Gioconda, iniziata all'inizio del Cinquecento, è oggi conservata al Museo del Louvre di Parigi.
        Nei suoi taccuini compaiono progetti di macchine volanti, studi di anatomia basati su dissezioni e osservazioni sul volo degli uccelli.
        Il celebre disegno dell'Uomo vitruviano illustra le proporzioni ideali del corpo umano secondo Vitruvio.
        Negli ultimi anni si trasferì in Francia su invito del re Francesco I e morì ad Amboise nel 1519.
        """,
        F(
            "Dove si formò Leonardo da Vinci?",
            "a Firenze, nella bottega di Andrea del Verrocchio",
            "a Roma, con Michelangelo | a Venezia, con Tiziano | a Milano, con Bramante",
            "Verrocchio",
        ),
        F(
            "Dove si trova l'Ultima Cena di Leonardo?",
            "nel refettorio di Santa Maria delle Grazie, a Milano",
            "nella Cappella Sistina | agli Uffizi di Firenze | al Louvre",
            "Santa Maria delle Grazie",
        ),
        F(
            "Dove morì Leonardo da Vinci?",
            "ad Amboise, in Francia, nel 1519",
            "a Firenze | a Roma | a Vinci",
            "Amboise",
        ),
        F(
            "Perché gli appunti di Leonardo sono difficili da leggere?",
            "perché scriveva da destra a sinistra, in grafia speculare",
            "perché scriveva in greco antico | perché usava un codice numerico | perché scriveva solo in latino",
            "speculare",
        ),
    ),
    T(
        "it",
        "Etna",
        """
        L'Etna è un vulcano attivo situato sulla costa orientale della Sicilia, alle spalle di Catania.
        Con un'altezza di circa 3.300 metri, che varia a seconda delle eruzioni, è il vulcano attivo più alto d'Europa al di fuori del Caucaso.
        È anche uno dei vulcani più attivi del mondo, con eruzioni frequenti sia dai crateri sommitali sia dai fianchi.
        Nel 1669 una colata di lava raggiunse Catania e arrivò fino al mare, distruggendo parte della città.
        I suoli vulcanici sono molto fertili e sulle sue pendici si coltivano vigneti, agrumeti, pistacchi e nocciole.
        Il pistacchio di Bronte, coltivato proprio sui versanti dell'Etna, è famoso in tutto il mondo.
        Gli abitanti del luogo lo chiamano spesso semplicemente la Montagna, oppure Mongibello.
        Nel 2013 l'Etna è stato inserito nella lista del Patrimonio dell'Umanità dell'UNESCO.
        """,
        F(
            "Quanto è alto l'Etna?",
            "circa 3.300 metri, a seconda delle eruzioni",
            "circa 1.200 metri | circa 4.800 metri | circa 2.000 metri",
            "3.300",
        ),
        F(
            "Che cosa accadde sull'Etna nel 1669?",
            "una colata di lava raggiunse Catania e arrivò fino al mare",
            "il vulcano si spense per un secolo | fu fondato il primo osservatorio | un terremoto distrusse Messina",
            "1669",
        ),
        F(
            "Quale prodotto famoso si coltiva sulle pendici dell'Etna?",
            "il pistacchio di Bronte",
            "il riso Carnaroli | il tartufo d'Alba | il limone di Amalfi",
            "Bronte",
        ),
        F(
            "Quando l'Etna è diventato Patrimonio dell'Umanità?",
            "nel 2013",
            "nel 1980 | nel 1997 | nel 2020",
            "2013",
        ),
    ),
]

PL_TOPICS = [
    T(
        "pl",
        "Maria Skłodowska-Curie",
        """
        Maria Skłodowska-Curie urodziła się w 1867 roku w Warszawie, która znajdowała się wtedy pod panowaniem rosyjskim.
        Ponieważ kobiety nie mogły studiować na uczelniach w zaborze rosyjskim, uczyła się na tajnym Uniwersytecie Latającym.
        W 1891 roku wyjechała do Paryża, gdzie studiowała fizykę i matematykę na Sorbonie.
        Razem z mężem, Piotrem Curie, badała promieniowanie uranu i wprowadziła termin „promieniotwórczość”.
        W 1898 roku ogłosili odkrycie dwóch nowych pierwiastków: polonu, nazwanego na cześć Polski, oraz radu.
        W 1903 roku otrzymała Nagrodę Nobla z fizyki, a w 1911 roku – z chemii.
        Jest jedyną osobą, która zdobyła Nagrodę Nobla w dwóch różnych dziedzinach nauk przyrodniczych.
        W 1932 roku w Warszawie otwarto Instytut Radowy, którego powstanie wspierała.
        Zmarła w 1934 roku we Francji.
        """,
        F(
            "Gdzie urodziła się Maria Skłodowska-Curie?",
            "w Warszawie",
            "w Krakowie | w Paryżu | w Poznaniu",
            "Warszawie",
        ),
        F(
            "Skąd pochodzi nazwa polonu?",
            "od Polski, ojczyzny Marii Skłodowskiej-Curie",
            "od bieguna północnego | od greckiego słowa oznaczającego „wiele” | od nazwiska Piotra Curie",
            "polonu",
        ),
        F(
            "W jakich dziedzinach Maria Skłodowska-Curie otrzymała Nagrody Nobla?",
            "z fizyki (1903) i z chemii (1911)",
            "z chemii i medycyny | z fizyki i literatury | z medycyny i fizyki",
            "1911",
        ),
        F(
            "Kiedy otwarto Instytut Radowy w Warszawie?",
            "w 1932 roku",
            "w 1898 roku | w 1911 roku | w 1945 roku",
            "1932",
        ),
        F(
            "Gdzie uczyła się Maria Skłodowska przed wyjazdem do Paryża?",
            "na tajnym Uniwersytecie Latającym",
            "na Uniwersytecie Jagiellońskim | w Petersburgu | w Wiedniu",
            "Latającym",
        ),
    ),
    T(
        "pl",
        "Wisła",
        """
        Wisła jest najdłuższą rzeką Polski – ma około 1047 kilometrów długości.
        Jej źródła znajdują się w Beskidzie Śląskim, na stokach Baraniej Góry.
        Płynie przez wiele dużych miast, między innymi przez Kraków, Warszawę, Płock i Toruń.
        Według legendy u stóp Wawelu, nad samą Wisłą, mieszkał smok wawelski.
        Wisła uchodzi do Morza Bałtyckiego, do Zatoki Gdańskiej.
        Jej dorzecze obejmuje większą część terytorium Polski.
        Na wielu odcinkach rzeka zachowała naturalny charakter, z piaszczystymi łachami i wyspami, na których gniazdują ptaki.
        W 1895 roku w pobliżu ujścia przekopano nowe koryto, zwane Przekopem Wisły, aby zmniejszyć ryzyko powodzi.
        Wisła pojawia się w wielu pieśniach i legendach, a jej nazwa jest jednym z symboli polskiej tożsamości.
        """,
        F(
            "Jak długa jest Wisła?",
            "około 1047 kilometrów",
            "około 500 kilometrów | około 2000 kilometrów | około 850 kilometrów",
            "1047",
        ),
        F(
            "Gdzie znajdują się źródła Wisły?",
            "w Beskidzie Śląskim, na stokach Baraniej Góry",
            "w Tatrach | w Sudetach | w Bieszczadach",
            "Baraniej Góry",
        ),
        F(
            "Do jakiego morza uchodzi Wisła?",
            "do Morza Bałtyckiego, do Zatoki Gdańskiej",
            "do Morza Czarnego | do Morza Północnego | do Morza Śródziemnego",
            "uchodzi",
        ),
        F(
            "Po co przekopano Przekop Wisły?",
            "aby zmniejszyć ryzyko powodzi",
            "aby połączyć Wisłę z Odrą | aby zbudować port w Warszawie | aby osuszyć jezioro",
            "Przekopem",
        ),
    ),
    T(
        "pl",
        "Mikołaj Kopernik",
        """
        Mikołaj Kopernik urodził się w 1473 roku w Toruniu.
        Studiował w Krakowie, a następnie we Włoszech, między innymi w Bolonii i Padwie, gdzie zajmował się prawem i medycyną.
        Większość życia spędził na Warmii, gdzie był kanonikiem kapituły we Fromborku.
        Oprócz astronomii zajmował się także ekonomią i sformułował spostrzeżenie, że gorszy pieniądz wypiera lepszy z obiegu.
        Jego najważniejsze dzieło, „O obrotach sfer niebieskich”, ukazało się w 1543 roku, w roku jego śmierci.
        Przedstawił w nim model heliocentryczny, w którym to Słońce, a nie Ziemia, znajduje się w centrum.
        Teoria ta zapoczątkowała przewrót w nauce, nazywany często rewolucją kopernikańską.
        W 2005 roku w katedrze we Fromborku odnaleziono szczątki, które później, między innymi dzięki badaniom DNA, zidentyfikowano jako należące do Kopernika.
        """,
        F(
            "Gdzie urodził się Mikołaj Kopernik?",
            "w Toruniu",
            "we Fromborku | w Krakowie | w Gdańsku",
            "Toruniu",
        ),
        F(
            "Kiedy ukazało się dzieło „O obrotach sfer niebieskich”?",
            "w 1543 roku",
            "w 1473 roku | w 1610 roku | w 1500 roku",
            "1543",
        ),
        F(
            "Co według Kopernika znajduje się w centrum?",
            "Słońce",
            "Ziemia | Księżyc | Jowisz",
            "heliocentryczny",
        ),
        F(
            "Jakie spostrzeżenie ekonomiczne sformułował Kopernik?",
            "że gorszy pieniądz wypiera lepszy z obiegu",
            "prawo podaży i popytu | zasadę przewagi komparatywnej | zasadę niewidzialnej ręki rynku",
            "gorszy pieniądz",
        ),
    ),
]

PT_TOPICS = [
    T(
        "pt",
        "Fado",
        """
        O fado é um género musical português que surgiu em Lisboa na primeira metade do século XIX.
        É geralmente cantado por uma só voz, acompanhada pela guitarra portuguesa, de doze cordas, e pela viola.
        As letras falam muitas vezes de saudade, de amor perdido, do mar e da vida nos bairros populares.
        Além do fado de Lisboa, existe uma tradição distinta em Coimbra, ligada aos estudantes universitários e cantada sobretudo por homens.
        Amália Rodrigues, conhecida como a Rainha do Fado, levou este género a públicos de todo o mundo a partir dos anos 1950.
        Bairros como Alfama e Mouraria continuam a ter casas de fado onde se pode ouvir música ao vivo.
        Em 2011, o fado foi inscrito pela UNESCO na lista do Património Cultural Imaterial da Humanidade.
        """,
        F(
            "Onde surgiu o fado?",
            "em Lisboa, na primeira metade do século XIX",
            "no Porto | em Coimbra, no século XVI | no Brasil",
            "surgiu",
        ),
        F(
            "Quem era conhecida como a Rainha do Fado?",
            "Amália Rodrigues",
            "Mariza | Dulce Pontes | Cesária Évora",
            "Amália",
        ),
        F(
            "Que instrumento acompanha tradicionalmente o fado?",
            "a guitarra portuguesa, de doze cordas, com a viola",
            "o acordeão | o piano | o cavaquinho",
            "doze cordas",
        ),
        F("Quando foi o fado reconhecido pela UNESCO?", "em 2011", "em 1999 | em 2005 | em 2018", "2011"),
    ),
    T(
        "pt",
        "Torre de Belém",
        """
        A Torre de Belém ergue-se na margem norte do rio Tejo, em Lisboa.
        Foi construída entre 1514 e 1520, durante o reinado de D. Manuel I, para defender a entrada do porto.
        O projeto é atribuído a Francisco de Arruda, e a decoração é um dos melhores exemplos do estilo manuelino.
        Entre os motivos esculpidos encontram-se cordas, esferas armilares e a cruz da Ordem de Cristo.
        Uma das esculturas mais curiosas representa um rinoceronte, inspirado no animal enviado a Lisboa em 1515.
        Originalmente, a torre erguia-se numa pequena ilha no rio; com o tempo, a margem avançou e ela ficou junto à terra.
        Em 1983 foi classificada como Património Mundial pela UNESCO, juntamente com o vizinho Mosteiro dos Jerónimos.
        """,
        F(
            "Quem mandou construir a Torre de Belém?",
            "D. Manuel I, entre 1514 e 1520",
            "D. Afonso Henriques | D. João V | o Marquês de Pombal",
            "Manuel I",
        ),
        F(
            "Que estilo arquitetónico tem a Torre de Belém?",
            "o estilo manuelino",
            "o barroco | o gótico flamengo | o neoclássico",
            "manuelino",
        ),
        F(
            "Que animal curioso aparece esculpido na Torre de Belém?",
            "um rinoceronte",
            "um elefante | um leão | um camelo",
            "rinoceronte",
        ),
        F(
            "Com que monumento foi a torre classificada pela UNESCO em 1983?",
            "o Mosteiro dos Jerónimos",
            "o Castelo de São Jorge | o Palácio da Pena | a Sé de Lisboa",
            "Jerónimos",
        ),
    ),
]

NL_TOPICS = [
    T(
        "nl",
        "Afsluitdijk",
        """
        De Afsluitdijk is een ruim 32 kilometer lange dijk in het noorden van Nederland.
        Hij verbindt Noord-Holland met Friesland en scheidt de Waddenzee van het IJsselmeer.
        Na een zware stormvloed in 1916 besloot de regering de Zuiderzee af te sluiten om het land beter tegen het water te beschermen.
        Het plan was gebaseerd op ideeën van ingenieur Cornelis Lely en op berekeningen van een staatscommissie onder leiding van de natuurkundige Hendrik Lorentz.
        De dijk werd op 28 mei 1932 gesloten, en daarmee veranderde de zoute Zuiderzee geleidelijk in het zoete IJsselmeer.
        Met spuisluizen en schutsluizen wordt het waterpeil geregeld en kunnen schepen passeren.
        Over de dijk loopt de snelweg A7.
        De laatste jaren is de dijk versterkt, en er wordt een vismigratierivier aangelegd, zodat vissen weer tussen zout en zoet water kunnen trekken.
        """,
        F(
            "Welke provincies verbindt de Afsluitdijk?",
            "Noord-Holland en Friesland",
            "Zeeland en Zuid-Holland | Groningen en Drenthe | Utrecht en Gelderland",
            "verbindt",
        ),
        F(
            "Wanneer werd de Afsluitdijk gesloten?",
            "op 28 mei 1932",
            "in 1916 | in 1953 | in 1986",
            "1932",
            "1953 is het jaar van de Watersnoodramp in Zeeland, dus een bekende verwarring.",
        ),
        F(
            "Wat werd de Zuiderzee na de afsluiting?",
            "het zoete IJsselmeer",
            "de Waddenzee | de Oosterschelde | de Noordzee",
            "zoete IJsselmeer",
        ),
        F(
            "Welke natuurkundige leidde de berekeningen voor het plan?",
            "Hendrik Lorentz",
            "Christiaan Huygens | Heike Kamerlingh Onnes | Pieter Zeeman",
            "Lorentz",
        ),
    ),
    T(
        "nl",
        "Vincent van Gogh",
        """
        Vincent van Gogh werd in 1853 geboren in Zundert, in Noord-Brabant.
        Hij begon pas rond zijn zevenentwintigste serieus te schilderen, na eerder te hebben gewerkt bij een kunsthandel en als hulpprediker.
        Zijn vroege werk, zoals De Aardappeleters uit 1885, is donker van kleur en toont het zware leven van boeren.
        In Parijs en later in het Zuid-Franse Arles werd zijn palet veel lichter en kleurrijker.
        Daar schilderde hij onder meer zijn beroemde zonnebloemen.
        Zijn broer Theo steunde hem jarenlang financieel, en hun briefwisseling is een belangrijke bron over zijn leven.
        Tijdens zijn leven verkocht hij weinig werk; hij overleed in 1890 in Auvers-sur-Oise.
        Tegenwoordig bezit het Van Gogh Museum in Amsterdam de grootste collectie van zijn schilderijen en tekeningen.
        """,
        F(
            "Waar werd Vincent van Gogh geboren?",
            "in Zundert, in Noord-Brabant",
            "in Amsterdam | in Arles | in Nuenen",
            "Zundert",
        ),
        F(
            "Wie steunde Van Gogh financieel?",
            "zijn broer Theo",
            "Paul Gauguin | zijn vader | kunsthandel Goupil",
            "Theo",
        ),
        F(
            "Hoe heet het bekende vroege werk van Van Gogh uit 1885?",
            "De Aardappeleters",
            "De Sterrennacht | Zonnebloemen | De Nachtwacht",
            "Aardappeleters",
        ),
        F(
            "Waar bevindt zich de grootste collectie van Van Goghs werk?",
            "in het Van Gogh Museum in Amsterdam",
            "in het Louvre | in het Rijksmuseum | in het Kröller-Müller Museum",
            "Van Gogh Museum",
            "Het Kröller-Müller Museum heeft de op één na grootste collectie, vandaar de verwarring.",
        ),
    ),
]

JA_TOPICS = [
    T(
        "ja",
        "富士山",
        """
        富士山は静岡県と山梨県にまたがる、日本で最も高い山である。
        標高は3776メートルで、ほぼ左右対称の美しい円すい形をしている。
        富士山は現在も活火山に分類されており、最後の噴火は1707年の宝永噴火である。
        宝永噴火では、大量の火山灰が江戸の町にも降り積もったと記録されている。
        古くから信仰の対象とされ、多くの和歌や浮世絵に描かれてきた。
        葛飾北斎の「富嶽三十六景」は、その代表的な作品である。
        一般に登山ができるのは、山開きが行われる7月上旬から9月上旬までの夏の期間である。
        2013年、富士山は「信仰の対象と芸術の源泉」として世界文化遺産に登録された。
        """,
        F(
            "富士山の標高は何メートルですか？",
            "3776メートル",
            "2456メートル | 3190メートル | 4120メートル",
            "3776",
        ),
        F("富士山が最後に噴火したのはいつですか？", "1707年の宝永噴火", "1914年 | 1792年 | 1854年", "1707"),
        F("富士山が世界文化遺産に登録されたのはいつですか？", "2013年", "1993年 | 2005年 | 2019年", "2013"),
        F(
            "富士山を描いた葛飾北斎の代表作は何ですか？",
            "「富嶽三十六景」",
            "「東海道五十三次」 | 「源氏物語絵巻」 | 「鳥獣戯画」",
            "北斎",
            "「東海道五十三次」は歌川広重の作品なので、よく混同される。",
        ),
    ),
    T(
        "ja",
        "新幹線",
        """
        新幹線は日本の高速鉄道網で、最初の路線である東海道新幹線は1964年10月1日に開業した。
        開業は東京オリンピックの開幕直前で、東京と新大阪を結んだ。
        当初の最高速度は時速210キロメートルで、当時としては世界最速の営業列車だった。
        現在では北海道から九州まで路線網が広がっている。
        新幹線は定時運行で知られ、平均の遅れが1分に満たない年も多い。
        開業以来、脱線や衝突による乗客の死亡事故は一度も起きていない。
        車両の先頭形状はトンネルに入るときの騒音を減らすように工夫されており、500系ではカワセミのくちばしが参考にされた。
        """,
        F("東海道新幹線が開業したのはいつですか？", "1964年10月1日", "1958年 | 1972年 | 1987年", "1964"),
        F(
            "最初の新幹線はどの都市を結びましたか？",
            "東京と新大阪",
            "東京と仙台 | 東京と名古屋 | 大阪と博多",
            "新大阪",
        ),
        F(
            "開業当初の新幹線の最高速度はどれくらいでしたか？",
            "時速210キロメートル",
            "時速130キロメートル | 時速320キロメートル | 時速500キロメートル",
            "210",
        ),
        F(
            "500系新幹線の先頭形状は何を参考にしましたか？",
            "カワセミのくちばし",
            "イルカの頭 | ハヤブサの翼 | ペンギンの体",
            "カワセミ",
        ),
    ),
]

ZH_TOPICS = [
    T(
        "zh",
        "长城",
        """
        长城是中国古代修建的大型军事防御工程，总体上呈东西走向。
        早在春秋战国时期，各诸侯国就开始修筑长城。
        秦始皇统一中国后，把各国原有的城墙连接起来，形成了“万里长城”的雏形。
        今天人们看到的砖石长城大多建于明代，其中著名的关隘包括东部的山海关和西部的嘉峪关。
        2012年公布的调查结果显示，历代长城的总长度约为21196千米。
        长城上每隔一段距离就建有烽火台，用烟火传递敌情。
        1987年，长城被列入《世界遗产名录》。
        北京附近的八达岭和慕田峪是游客最多的长城段落。
        """,
        F(
            "历代长城的总长度约为多少？",
            "约21196千米",
            "约6000千米 | 约2500千米 | 约50000千米",
            "21196",
            "约8850千米只是明长城的长度，常被误当作总长度。",
        ),
        F("长城是哪一年被列入《世界遗产名录》的？", "1987年", "1972年 | 1997年 | 2008年", "1987"),
        F("今天看到的砖石长城大多建于哪个朝代？", "明代", "秦代 | 汉代 | 清代", "明代"),
        F("长城上的烽火台有什么作用？", "用烟火传递敌情", "储存粮食 | 供皇帝居住 | 观测天象", "烽火台"),
    ),
    T(
        "zh",
        "大熊猫",
        """
        大熊猫是中国特有的哺乳动物，主要生活在四川、陕西和甘肃的山区竹林中。
        它们的食物中约百分之九十九是竹子，但在分类上仍属于食肉目。
        由于竹子营养价值低，大熊猫每天要花十几个小时进食。
        大熊猫的前掌有一个由腕骨特化而成的“伪拇指”，帮助它们抓握竹子。
        野生大熊猫通常独居，幼崽出生时体重只有一百克左右。
        经过多年的保护，世界自然保护联盟于2016年将大熊猫的受威胁等级从“濒危”调整为“易危”。
        2021年，中国正式设立大熊猫国家公园。
        """,
        F("大熊猫主要吃什么？", "竹子", "鱼 | 水果 | 昆虫", "百分之九十九"),
        F(
            "大熊猫的“伪拇指”是什么？",
            "由腕骨特化而成、帮助抓握竹子的结构",
            "一根真正的第六根手指 | 一颗特殊的牙齿 | 尾巴上的骨头",
            "伪拇指",
        ),
        F("大熊猫的受威胁等级是哪一年调整为“易危”的？", "2016年", "2006年 | 1990年 | 2021年", "2016"),
        F("大熊猫刚出生时大约有多重？", "一百克左右", "一千克左右 | 十千克左右 | 十克左右", "一百克"),
    ),
]

TOPICS = {
    "en": EN_TOPICS,
    "fr": FR_TOPICS,
    "de": DE_TOPICS,
    "es": ES_TOPICS,
    "it": IT_TOPICS,
    "pl": PL_TOPICS,
    "pt": PT_TOPICS,
    "nl": NL_TOPICS,
    "ja": JA_TOPICS,
    "zh": ZH_TOPICS,
}

# How each topic is named inside a sentence of its own language ("a short overview of {name}").
NAMES = {
    "Danube": "the Danube",
    "Photosynthesis": "photosynthesis",
    "Printing press": "the printing press",
    "Western honey bee": "honeybees",
    "Mount Vesuvius": "Mount Vesuvius",
    "Rosetta Stone": "the Rosetta Stone",
    "Tide": "tides",
    "Edward Jenner": "Edward Jenner",
    "Transistor": "the transistor",
    "Great Barrier Reef": "the Great Barrier Reef",
    "Marie Curie": "Marie Curie",
    "Tea": "tea",
    "Plate tectonics": "plate tectonics",
    "Octopus": "octopuses",
    "Silk Road": "the Silk Road",
    "Lighthouse of Alexandria": "the Lighthouse of Alexandria",
    "Metric system": "the metric system",
    "Sourdough": "sourdough bread",
    "Tour Eiffel": "la tour Eiffel",
    "Loire": "la Loire",
    "Louis Pasteur": "Louis Pasteur",
    "Mont-Saint-Michel": "le Mont-Saint-Michel",
    "Baguette": "la baguette",
    "Rhein": "den Rhein",
    "Johann Sebastian Bach": "Johann Sebastian Bach",
    "Berliner Mauer": "die Berliner Mauer",
    "Schwarzwald": "den Schwarzwald",
    "Albert Einstein": "Albert Einstein",
    "Alhambra": "la Alhambra",
    "Don Quijote de la Mancha": "el Quijote",
    "Río Amazonas": "el río Amazonas",
    "Frida Kahlo": "Frida Kahlo",
    "Camino de Santiago": "el Camino de Santiago",
}


# How English reasoning refers to the non-English topics.
EN_NAMES = {
    "Tour Eiffel": "the Eiffel Tower",
    "Loire": "the Loire",
    "Baguette": "the baguette",
    "Rhein": "the Rhine",
    "Berliner Mauer": "the Berlin Wall",
    "Schwarzwald": "the Black Forest",
    "Alhambra": "the Alhambra",
    "Don Quijote de la Mancha": "Don Quixote",
    "Río Amazonas": "the Amazon River",
    "Camino de Santiago": "the Camino de Santiago",
    "Colosseo": "the Colosseum",
    "Etna": "Mount Etna",
    "Wisła": "the Vistula",
    "Mikołaj Kopernik": "Copernicus",
    "Fado": "fado",
    "Torre de Belém": "the Belém Tower",
    "Afsluitdijk": "the Afsluitdijk",
    "富士山": "Mount Fuji",
    "新幹線": "the Shinkansen",
    "长城": "the Great Wall",
    "大熊猫": "the giant panda",
}


def name_of(topic: Topic) -> str:
    return NAMES.get(topic.title, topic.title)


def disp(topic: Topic, rlang: str) -> str:
    """How reasoning written in `rlang` names the topic inside a sentence."""
    if rlang == "en":
        return EN_NAMES.get(topic.title, NAMES.get(topic.title, topic.title))
    if rlang in ("fr", "es"):
        return NAMES.get(topic.title, topic.title)
    return topic.title


# --------------------------------------------------------------------------------------------------
# Per-language phrasing of queries and answers
# --------------------------------------------------------------------------------------------------

LX: dict[str, dict[str, list[str]]] = {
    "en": {
        "mem_q": [
            "{q}",
            "{q}",
            "Quick question about {name}: {q}",
            "{q} Please keep it short.",
            "I'm reading about {name} and got stuck. {q}",
            "{ql}",
            "{q} thanks! 🙏",
            "My friend and I are arguing about this. {q}",
        ],
        "mem_a": [
            "**{A}.**\n\n{ev} {ctx}",
            "The short answer is {a}.\n\n{ev} {ctx}",
            "{ev}\n\nFor context: {ctx}",
            "{A}. {ev}\n\n{ctx} {ctx2}",
            "**Answer:** {a}\n\n**Why:** {ev}\n\n**Good to know:** {ctx}",
        ],
        "rag_q": [
            "Answer the question using only the sources below. Cite the source number in brackets.\n\nQuestion: {q}\n\n{sources}",
            "{q}\n\nUse the following documents to answer, and say which one you relied on.\n\n{sources}",
            "{sources}\n\nBased on the sources above: {q}",
            "I found these two excerpts. {q} Please cite them.\n\n{sources}",
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nSource {j}, about {other}, does not address this question.",
            "**{A}** [{k}].\n\n{ev} [{k}] {ctx} [{k}]",
            "Source {k} answers this directly: {ev} [{k}]\n\nIt also notes: {ctx} [{k}]\n\n(Source {j} is about {other} and isn't relevant here.)",
        ],
        "mcq_q": [
            "{q}\n\n{opts}\n\nAnswer with the letter of the correct option.",
            "Multiple choice question:\n{q}\n{opts}",
            "{q}\n{opts}\nPick one and explain briefly.",
        ],
        "mcq_a": [
            "**{L}) {opt}**\n\n{ev}{extra}",
            "The correct answer is **{L}**: {opt}.\n\n{ev}{extra}",
            "{L}. {opt}\n\nExplanation: {ev}{extra}",
        ],
    },
    "fr": {
        "mem_q": ["{q}", "{q}", "Petite question sur {name} : {ql}", "{q} Merci de répondre brièvement."],
        "mem_a": [
            "**{A}.**\n\n{ev} {ctx}",
            "En bref : {a}.\n\n{ev} {ctx}",
            "{ev}\n\nPour le contexte : {ctx}",
        ],
        "rag_q": [
            "Réponds à la question en t'appuyant uniquement sur les sources ci-dessous, et cite-les entre crochets.\n\nQuestion : {q}\n\n{sources}",
            "{sources}\n\nD'après ces documents : {q}",
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nLa source {j} porte sur un autre sujet ({other}) et n'est pas utile ici.",
            "**{A}** [{k}].\n\n{ev} [{k}] {ctx} [{k}]",
        ],
        "mcq_q": ["{q}\n\n{opts}\n\nRéponds avec la lettre de la bonne réponse.", "QCM : {q}\n{opts}"],
        "mcq_a": ["**{L}) {opt}**\n\n{ev}{extra}", "La bonne réponse est **{L}** : {opt}.\n\n{ev}{extra}"],
    },
    "de": {
        "mem_q": ["{q}", "{q}", "Kurze Frage: {q}", "{q} Bitte kurz antworten."],
        "mem_a": [
            "**{A}.**\n\n{ev} {ctx}",
            "Kurz gesagt: {a}.\n\n{ev} {ctx}",
            "{ev}\n\nZur Einordnung: {ctx}",
        ],
        "rag_q": [
            "Beantworte die Frage ausschließlich anhand der folgenden Quellen und gib die Quelle in eckigen Klammern an.\n\nFrage: {q}\n\n{sources}",
            "{sources}\n\nLaut den obigen Texten: {q}",
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nQuelle {j} behandelt ein anderes Thema ({other}) und ist hier nicht relevant.",
            "**{A}** [{k}].\n\n{ev} [{k}] {ctx} [{k}]",
        ],
        "mcq_q": [
            "{q}\n\n{opts}\n\nAntworte mit dem Buchstaben der richtigen Option.",
            "Multiple-Choice-Frage: {q}\n{opts}",
        ],
        "mcq_a": ["**{L}) {opt}**\n\n{ev}{extra}", "Richtig ist **{L}**: {opt}.\n\n{ev}{extra}"],
    },
    "es": {
        "mem_q": ["{q}", "{q}", "Una pregunta rápida: {q}", "{q} Responde en pocas palabras, por favor."],
        "mem_a": ["**{A}.**\n\n{ev} {ctx}", "En resumen: {a}.\n\n{ev} {ctx}", "{ev}\n\nComo contexto: {ctx}"],
        "rag_q": [
            "Responde a la pregunta usando solo las fuentes siguientes y cítalas entre corchetes.\n\nPregunta: {q}\n\n{sources}",
            "{sources}\n\nSegún estos documentos: {q}",
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nLa fuente {j} trata de otro tema ({other}) y no es relevante aquí.",
            "**{A}** [{k}].\n\n{ev} [{k}] {ctx} [{k}]",
        ],
        "mcq_q": [
            "{q}\n\n{opts}\n\nResponde con la letra de la opción correcta.",
            "Pregunta tipo test: {q}\n{opts}",
        ],
        "mcq_a": [
            "**{L}) {opt}**\n\n{ev}{extra}",
            "La respuesta correcta es la **{L}**: {opt}.\n\n{ev}{extra}",
        ],
    },
    "it": {
        "mem_q": ["{q}", "Una domanda veloce: {q}", "{q} Rispondi in breve, per favore."],
        "mem_a": ["**{A}.**\n\n{ev} {ctx}", "In breve: {a}.\n\n{ev} {ctx}"],
        "rag_q": [
            "Rispondi alla domanda usando solo le fonti qui sotto e citale tra parentesi quadre.\n\nDomanda: {q}\n\n{sources}"
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nLa fonte {j} riguarda un altro argomento ({other}) e non serve qui."
        ],
        "mcq_q": ["{q}\n\n{opts}\n\nRispondi con la lettera dell'opzione corretta."],
        "mcq_a": [
            "**{L}) {opt}**\n\n{ev}{extra}",
            "La risposta corretta è la **{L}**: {opt}.\n\n{ev}{extra}",
        ],
    },
    "pl": {
        "mem_q": ["{q}", "Szybkie pytanie: {q}", "{q} Odpowiedz krótko, proszę."],
        "mem_a": ["**{A}.**\n\n{ev} {ctx}", "Krótko mówiąc: {a}.\n\n{ev} {ctx}"],
        "rag_q": [
            "Odpowiedz na pytanie wyłącznie na podstawie poniższych źródeł i podaj numer źródła w nawiasie kwadratowym.\n\nPytanie: {q}\n\n{sources}"
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nŹródło {j} dotyczy innego tematu ({other}) i nie jest tu przydatne."
        ],
        "mcq_q": ["{q}\n\n{opts}\n\nOdpowiedz, podając literę prawidłowej odpowiedzi."],
        "mcq_a": ["**{L}) {opt}**\n\n{ev}{extra}", "Prawidłowa odpowiedź to **{L}**: {opt}.\n\n{ev}{extra}"],
    },
    "pt": {
        "mem_q": ["{q}", "Uma pergunta rápida: {q}"],
        "mem_a": ["**{A}.**\n\n{ev} {ctx}", "Em resumo: {a}.\n\n{ev} {ctx}"],
        "rag_q": [
            "Responde à pergunta usando apenas as fontes abaixo e indica a fonte entre parênteses retos.\n\nPergunta: {q}\n\n{sources}"
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nA fonte {j} trata de outro assunto ({other}) e não é relevante aqui."
        ],
        "mcq_q": ["{q}\n\n{opts}\n\nResponde com a letra da opção correta."],
        "mcq_a": ["A resposta correta é a **{L}**: {opt}.\n\n{ev}{extra}"],
    },
    "nl": {
        "mem_q": ["{q}", "Even een vraag: {q}"],
        "mem_a": ["**{A}.**\n\n{ev} {ctx}", "Kort gezegd: {a}.\n\n{ev} {ctx}"],
        "rag_q": [
            "Beantwoord de vraag alleen op basis van de onderstaande bronnen en vermeld de bron tussen vierkante haken.\n\nVraag: {q}\n\n{sources}"
        ],
        "rag_a": [
            "{ev} [{k}] {ctx} [{k}]\n\nBron {j} gaat over een ander onderwerp ({other}) en is hier niet relevant."
        ],
        "mcq_q": ["{q}\n\n{opts}\n\nAntwoord met de letter van het juiste antwoord."],
        "mcq_a": ["Het juiste antwoord is **{L}**: {opt}.\n\n{ev}{extra}"],
    },
    "ja": {
        "mem_q": ["{q}", "{q}簡単に教えてください。"],
        "mem_a": ["**{a}**です。\n\n{ev}{ctx}", "答え：{a}\n\n{ev}{ctx}"],
        "rag_q": [
            "以下の資料だけを使って質問に答え、根拠となる資料の番号を角括弧で示してください。\n\n質問：{q}\n\n{sources}"
        ],
        "rag_a": [
            "{ev}[{k}]{ctx}[{k}]\n\n資料{j}は別の話題（{other}）についてのもので、この質問には関係しません。"
        ],
        "mcq_q": ["{q}\n\n{opts}\n\n正しい選択肢の記号で答えてください。"],
        "mcq_a": ["正解は **{L}**（{opt}）です。\n\n{ev}{extra}"],
    },
    "zh": {
        "mem_q": ["{q}", "{q}请简单回答。"],
        "mem_a": ["**{a}**。\n\n{ev}{ctx}", "答案：{a}\n\n{ev}{ctx}"],
        "rag_q": ["请仅根据以下资料回答问题，并用方括号注明资料编号。\n\n问题：{q}\n\n{sources}"],
        "rag_a": ["{ev}[{k}]{ctx}[{k}]\n\n资料{j}讲的是另一个主题（{other}），与本问题无关。"],
        "mcq_q": ["{q}\n\n{opts}\n\n请选出正确答案的字母。"],
        "mcq_a": ["正确答案是 **{L}**：{opt}。\n\n{ev}{extra}"],
    },
}

# --------------------------------------------------------------------------------------------------
# Reasoning phrasing. English is the richest; French, German and Spanish rows reason natively part of
# the time (memorization, rag, math), the other languages reason in English and answer in their own.
# --------------------------------------------------------------------------------------------------

RX: dict[str, dict[str, list[str]]] = {
    "en": {
        "scope": [
            'What exactly is being asked? "{q}" One specific fact, not a history of {title}. A bare answer can feel curt, though, so one or two supporting sentences are worth adding.',
            "Scope check: the user asked a narrow question. I shouldn't turn it into an essay, but a little context makes the answer more useful and easier to trust.",
            "First, the intent. Someone asking this probably ran into the fact somewhere and wants it confirmed, or wants to settle a disagreement. Either way: clear answer first, evidence second.",
        ],
        "verify": [
            "Cross-check against a neighbouring fact: {ctx2} Consistent with the answer; nothing contradicts it.",
            "Does anything else I know conflict with this? {ctx2} No conflict there. Good.",
            "Anything in the surrounding facts that would contradict it? {ctx2} No, that sits fine alongside it.",
        ],
        "rag_skim": [
            "Skimming both sources first.",
            "Quick read of each source before answering:",
            "Let me see what each source covers.",
        ],
        "open": [
            'The question is "{q}" — a factual recall question about {title}. I should pin down the specific fact first and then decide how much context to add.',
            "Okay, the user asks: {q}\nTopic: {title}. Straightforward recall, but worth checking the details before answering.",
            'Query: "{q}"\n→ domain: {title}\n→ type: single-fact lookup; a short, direct answer should do.',
            'Let me parse this. "{q}" The user wants one specific fact about {title}, probably without a long essay.',
        ],
        "lang": [
            "The question is in {lname}, so the answer should be in {lname} too.",
            "Language: {lname}. I can think it through in English, but the reply goes out in {lname}.",
            "User writes in {lname} → answer in {lname}, keeping names in their usual {lname} form.",
        ],
        "recall": [
            "What do I remember about {title}?",
            "Let me collect what I know first:",
            "Background, roughly in the order I recall it:",
            "Relevant memory, {title}:",
        ],
        "core": [
            "The relevant piece is this: {ev}\nSo the answer should be {a}.",
            "Key fact → {ev}\n∴ answer: **{a}**.",
            "That settles it: {ev} The question asks exactly this, so: {a}.",
        ],
        "check_note": [
            "Before committing: could it be {w0}? {note} So no, it's {a}.",
            "Possible confusion: {w0}. {note} I'll keep {a}.",
            "Hmm, one trap here. {note} Good, {a} it is.",
        ],
        "check": [
            "Before committing: could the answer be {w0} instead? I don't think so. Nothing I recall ties {w0} to {title}, and the fact above is specific.",
            "Sanity check against the obvious alternatives: {w0}; {w1}; {w2}. None of them fits what I recalled, so {a} stands.",
            "Wait, is there any chance it's {w1}? No, that would contradict the detail above.",
        ],
        "extra": [
            "One more angle: {ctx} That's context rather than the answer itself, but it could help.",
            "Related detail worth a sentence: {ctx}",
            "Also possibly relevant: {ctx} I'll include it if the answer stays short.",
        ],
        "conf": [
            "Confidence: high on the core fact. I'll avoid adding figures I'm less sure of.",
            "Confidence ● high for the main answer; ◐ for the surrounding details, so keep those general.",
            "I'm fairly confident here. The main risk is overstating secondary details, so keep them minimal.",
        ],
        "plan": [
            "Plan:\n- lead with the answer\n- one or two sentences of context\n- no headings, keep it short",
            "Answer structure: direct answer first, then the supporting fact, then one extra detail. No need for lists.",
            "Format: a short paragraph or two. Bold the key answer so it's easy to spot.",
        ],
        "rag_open": [
            'The question: "{q}". Two sources are provided, so first figure out which one actually addresses it.',
            "User asks: {q}\nTwo excerpts attached. Need an answer grounded in them, with citations.",
            'Task: answer "{q}" from the given sources only. Let me scan both.',
        ],
        "rag_scan": [
            "Source {k} is about {title}. Source {j} is about {other}, which is unrelated here, though I should make sure it doesn't say anything contradictory.",
            "Source {j}: {other}. Not relevant to the question. Source {k}: {title}, which is where the answer should be.",
        ],
        "rag_quote": [
            'In source {k}: "{ev}"\n→ that answers it directly: {a}.',
            "Relevant line, source {k}:\n> {ev}\nSo: {a}.",
        ],
        "rag_extra": [
            'Anything else in source {k} worth adding? "{ctx}" Yes, useful as supporting detail.',
            'Source {k} also says: "{ctx}" That adds context without going beyond the text.',
        ],
        "rag_check": [
            "Grounding check: everything I plan to say is in source {k}; nothing from source {j} is needed, and I shouldn't add outside facts.",
            "Check: the answer comes from the text, not from memory. ✓ Source {j} contributes nothing, so I'll say so briefly.",
        ],
        "rag_plan": [
            "Citations as [{k}] after each claim.",
            "Format: a short paragraph with [{k}] citations, and a brief note that source {j} is off-topic.",
        ],
    },
    "fr": {
        "scope": [
            "Que demande-t-on exactement ? « {q} » Un fait précis, pas un exposé sur {title}. Une ou deux phrases de contexte rendront toutefois la réponse plus utile.",
            "Portée de la question : étroite. Pas besoin d'un long développement, mais un peu de contexte aide à faire confiance à la réponse.",
        ],
        "verify": [
            "Vérification avec un fait voisin : {ctx2} C'est cohérent avec la réponse.",
            "Quelque chose contredit-il cela ? {ctx2} Non, aucune contradiction.",
        ],
        "rag_skim": ["Lecture rapide des deux sources :", "D'abord, ce que couvre chaque source :"],
        "open": [
            "La question : « {q} » — une question factuelle sur {title}. Il faut retrouver le fait précis, puis ajouter un peu de contexte.",
            "On me demande : {q}\nSujet : {title}. Question de mémoire, réponse courte attendue.",
            "Question posée : « {q} »\n→ domaine : {title}\n→ type : rappel d'un fait unique",
        ],
        "recall": ["Ce que je sais sur {title} :", "Rassemblons les éléments connus :", "Points de repère :"],
        "core": [
            "Le passage pertinent : {ev}\nDonc la réponse est : {a}.",
            "Fait clé → {ev}\n∴ réponse : **{a}**.",
        ],
        "check_note": [
            "Attention à un piège : {note} Je garde donc : {a}.",
            "Vérification : {w0} ? Non. {note}",
        ],
        "check": [
            "Vérification : pourrait-il s'agir de {w0} ? Non, rien ne relie {w0} à ce sujet, et le fait ci-dessus est précis.",
            "Pièges possibles : {w0} ; {w1}. Aucun ne correspond à ce que je sais, donc {a} reste la bonne réponse.",
        ],
        "extra": [
            "Détail utile à ajouter : {ctx}",
            "On peut aussi mentionner : {ctx} C'est du contexte, pas la réponse elle-même.",
        ],
        "conf": [
            "Confiance : élevée sur le fait principal. Je reste prudent sur les chiffres secondaires.",
            "Niveau de certitude : bon. Inutile d'en rajouter.",
        ],
        "plan": [
            "Plan de la réponse : donner la réponse d'emblée, puis une ou deux phrases de contexte, sans titres.",
            "Réponse directe, en français, en deux ou trois phrases au plus.",
        ],
        "rag_open": [
            "Deux sources fournies ; il faut voir laquelle répond à « {q} ».",
            "Question : {q}\nJe dois répondre uniquement à partir des documents, avec des citations.",
        ],
        "rag_scan": [
            "La source {k} porte sur {title} ; la source {j} concerne {other}, hors sujet ici.",
            "Source {j} : {other}, sans rapport avec la question. Source {k} : {title}, c'est là que se trouve la réponse.",
        ],
        "rag_quote": [
            "Dans la source {k} : « {ev} »\n→ réponse directe : {a}.",
            "Passage utile (source {k}) :\n> {ev}\nDonc : {a}.",
        ],
        "rag_extra": [
            "Détail complémentaire dans la même source : « {ctx} »",
            "La source {k} ajoute : « {ctx} » Utile comme contexte.",
        ],
        "rag_check": [
            "Vérification : tout ce que je vais dire figure dans la source {k} ✓ Rien à tirer de la source {j}.",
            "Je m'en tiens au texte fourni, sans connaissances extérieures.",
        ],
        "rag_plan": [
            "Citer [{k}] après chaque affirmation.",
            "Format : un court paragraphe avec les citations [{k}].",
        ],
    },
    "de": {
        "scope": [
            "Was genau wird gefragt? „{q}“ Gesucht ist ein konkreter Fakt, kein Vortrag zum ganzen Thema {title}. Ein, zwei Sätze Kontext machen die Antwort aber nützlicher.",
            "Reichweite der Frage: eng. Kein langer Aufsatz nötig, aber etwas Kontext schafft Vertrauen in die Antwort.",
        ],
        "verify": [
            "Gegencheck mit einem benachbarten Fakt: {ctx2} Das passt zur Antwort.",
            "Widerspricht dem etwas? {ctx2} Nein, kein Widerspruch.",
        ],
        "rag_skim": ["Zuerst beide Quellen überfliegen:", "Was deckt jede Quelle ab?"],
        "open": [
            "Die Frage lautet: „{q}“ – eine Wissensfrage, Thema {title}. Erst den konkreten Fakt klären, dann etwas Kontext ergänzen.",
            "Gefragt ist: {q}\nThema: {title}. Reine Wissensabfrage, kurze Antwort genügt.",
            "Frage: „{q}“\n→ Thema: {title}\n→ Typ: einzelner Fakt",
        ],
        "recall": ["Was weiß ich zum Thema {title}?", "Zuerst die bekannten Fakten sammeln:", "Stichpunkte:"],
        "core": [
            "Die entscheidende Stelle: {ev}\nAlso lautet die Antwort: {a}.",
            "Kernfakt → {ev}\n∴ Antwort: **{a}**.",
        ],
        "check_note": [
            "Achtung, typische Verwechslung: {note} Es bleibt also bei: {a}.",
            "Gegenprobe: {w0}? Nein. {note}",
        ],
        "check": [
            "Gegenprobe: Könnte die Antwort „{w0}“ lauten? Nein, dafür spricht nichts, und der Fakt oben ist eindeutig.",
            "Mögliche Fallen: {w0}; {w1}. Keine davon passt, also bleibt es bei {a}.",
        ],
        "extra": [
            "Nützlicher Zusatz: {ctx}",
            "Erwähnenswert wäre noch: {ctx} Das ist Kontext, nicht die Antwort selbst.",
        ],
        "conf": [
            "Sicherheit: hoch beim Kernfakt. Bei Nebenzahlen lieber vorsichtig bleiben.",
            "Ich bin mir ziemlich sicher. Nicht mehr hineinpacken als nötig.",
        ],
        "plan": [
            "Aufbau: Antwort zuerst, dann ein bis zwei Sätze Kontext, keine Überschriften.",
            "Direkte Antwort auf Deutsch, höchstens drei Sätze.",
        ],
        "rag_open": [
            "Zwei Quellen liegen vor; zuerst klären, welche die Frage „{q}“ beantwortet.",
            "Frage: {q}\nAntwort nur aus den Quellen, mit Quellenangabe.",
        ],
        "rag_scan": [
            "Quelle {k} behandelt das Thema {title}, Quelle {j} das Thema {other}; die zweite ist hier nicht einschlägig.",
            "Quelle {j}: Thema {other}, ohne Bezug zur Frage. Quelle {k}: Thema {title}, dort sollte die Antwort stehen.",
        ],
        "rag_quote": [
            "In Quelle {k}: „{ev}“\n→ beantwortet die Frage direkt: {a}.",
            "Relevante Stelle (Quelle {k}):\n> {ev}\nAlso: {a}.",
        ],
        "rag_extra": [
            "Weiteres Detail aus derselben Quelle: „{ctx}“",
            "Quelle {k} ergänzt: „{ctx}“ Gut als Kontext.",
        ],
        "rag_check": [
            "Prüfung: Alles, was ich sagen will, steht in Quelle {k} ✓ Aus Quelle {j} brauche ich nichts.",
            "Nur der gegebene Text, kein Zusatzwissen.",
        ],
        "rag_plan": ["Nach jeder Aussage [{k}] angeben.", "Format: kurzer Absatz mit Quellenangaben [{k}]."],
    },
    "es": {
        "scope": [
            "¿Qué se pregunta exactamente? «{q}» Un dato concreto, no una exposición sobre {title}. Aun así, una o dos frases de contexto harán la respuesta más útil.",
            "Alcance de la pregunta: concreto. No hace falta un desarrollo largo, pero algo de contexto ayuda a confiar en la respuesta.",
        ],
        "verify": [
            "Comprobación con un dato cercano: {ctx2} Es coherente con la respuesta.",
            "¿Algo lo contradice? {ctx2} No, ninguna contradicción.",
        ],
        "rag_skim": ["Primero, una lectura rápida de las dos fuentes:", "¿Qué cubre cada fuente?"],
        "open": [
            "La pregunta es «{q}»: una pregunta factual sobre {title}. Primero hay que fijar el dato concreto y luego añadir algo de contexto.",
            "Me preguntan: {q}\nTema: {title}. Pregunta de memoria; basta una respuesta breve.",
            "Pregunta: «{q}»\n→ tema: {title}\n→ tipo: un solo dato",
        ],
        "recall": ["¿Qué sé sobre {title}?", "Primero reúno lo que recuerdo:", "Datos de partida:"],
        "core": [
            "El dato relevante: {ev}\nPor tanto, la respuesta es: {a}.",
            "Dato clave → {ev}\n∴ respuesta: **{a}**.",
        ],
        "check_note": [
            "Ojo con una confusión habitual: {note} Me quedo con: {a}.",
            "Comprobación: ¿{w0}? No. {note}",
        ],
        "check": [
            "Comprobación: ¿podría ser {w0}? No, nada lo relaciona con este tema y el dato anterior es preciso.",
            "Posibles trampas: {w0}; {w1}. Ninguna encaja, así que la respuesta sigue siendo {a}.",
        ],
        "extra": [
            "Detalle útil para añadir: {ctx}",
            "También se puede mencionar: {ctx} Es contexto, no la respuesta en sí.",
        ],
        "conf": [
            "Confianza: alta en el dato principal. Prudencia con las cifras secundarias.",
            "Estoy bastante seguro. No hace falta añadir más de lo necesario.",
        ],
        "plan": [
            "Estructura: respuesta directa primero, luego una o dos frases de contexto, sin títulos.",
            "Respuesta directa en español, dos o tres frases como máximo.",
        ],
        "rag_open": [
            "Hay dos fuentes; primero veo cuál responde a «{q}».",
            "Pregunta: {q}\nDebo responder solo con los documentos, citándolos.",
        ],
        "rag_scan": [
            "La fuente {k} trata sobre {title}; la fuente {j} habla sobre {other}, que aquí no viene al caso.",
            "Fuente {j}: {other}, sin relación con la pregunta. Fuente {k}: {title}, ahí debería estar la respuesta.",
        ],
        "rag_quote": [
            "En la fuente {k}: «{ev}»\n→ responde directamente: {a}.",
            "Fragmento relevante (fuente {k}):\n> {ev}\nAsí que: {a}.",
        ],
        "rag_extra": [
            "Otro detalle de la misma fuente: «{ctx}»",
            "La fuente {k} añade: «{ctx}» Sirve como contexto.",
        ],
        "rag_check": [
            "Comprobación: todo lo que voy a decir está en la fuente {k} ✓ De la fuente {j} no necesito nada.",
            "Me limito al texto dado, sin conocimientos externos.",
        ],
        "rag_plan": ["Citar [{k}] después de cada afirmación.", "Formato: un párrafo breve con citas [{k}]."],
    },
}

# --------------------------------------------------------------------------------------------------
# Editing (proofreading) and constrained-writing phrasing
# --------------------------------------------------------------------------------------------------

EDIT = {
    "en": {
        "q": [
            "Please proofread this paragraph and fix any spelling, punctuation or capitalisation errors. Don't change the wording otherwise.\n\n{text}",
            "Can you correct the typos in the following text?\n\n{text}",
            'Fix the mistakes in this paragraph from my report:\n\n"{text}"',
            "{text}\n\nProofread the text above and give me back the corrected version.",
        ],
        "a": [
            "Here is the corrected text:\n\n{clean}\n\n**Changes:**\n{changes}",
            "{clean}\n\n---\nCorrections made ({n}):\n{changes}",
        ],
        "swap": '"{bad}" → "{good}" (typo)',
        "dup": 'removed the doubled word "{w}"',
        "lower": 'capitalised "{good}" at the start of a sentence',
        "nospace": 'added the missing space after the full stop before "{w}"',
    },
    "fr": {
        "q": [
            "Peux-tu corriger les fautes de ce texte sans en changer le style ?\n\n{text}",
            "Relis ce paragraphe et corrige les erreurs d'orthographe et de ponctuation :\n\n{text}",
        ],
        "a": ["Voici le texte corrigé :\n\n{clean}\n\n**Corrections :**\n{changes}"],
        "swap": "« {bad} » → « {good} » (coquille)",
        "dup": "suppression du mot répété « {w} »",
        "lower": "majuscule en début de phrase : « {good} »",
        "nospace": "ajout de l'espace manquante après le point, avant « {w} »",
    },
    "de": {
        "q": [
            "Bitte korrigiere die Fehler in diesem Text, ohne den Stil zu verändern:\n\n{text}",
            "Kannst du diesen Absatz Korrektur lesen?\n\n{text}",
        ],
        "a": ["Hier ist der korrigierte Text:\n\n{clean}\n\n**Korrekturen:**\n{changes}"],
        "swap": "„{bad}“ → „{good}“ (Tippfehler)",
        "dup": "doppeltes Wort „{w}“ entfernt",
        "lower": "Großschreibung am Satzanfang: „{good}“",
        "nospace": "fehlendes Leerzeichen nach dem Punkt vor „{w}“ ergänzt",
    },
    "es": {
        "q": [
            "¿Puedes corregir las erratas de este texto sin cambiar el estilo?\n\n{text}",
            "Revisa este párrafo y corrige los errores de ortografía y puntuación:\n\n{text}",
        ],
        "a": ["Aquí tienes el texto corregido:\n\n{clean}\n\n**Correcciones:**\n{changes}"],
        "swap": "«{bad}» → «{good}» (errata)",
        "dup": "eliminada la palabra repetida «{w}»",
        "lower": "mayúscula al inicio de oración: «{good}»",
        "nospace": "añadido el espacio que faltaba después del punto, antes de «{w}»",
    },
    "it": {
        "q": [
            "Puoi correggere gli errori di questo testo senza cambiarne lo stile?\n\n{text}",
            "Correggi i refusi in questo paragrafo:\n\n{text}",
        ],
        "a": ["Ecco il testo corretto:\n\n{clean}\n\n**Correzioni:**\n{changes}"],
        "swap": "«{bad}» → «{good}» (refuso)",
        "dup": "eliminata la parola ripetuta «{w}»",
        "lower": "maiuscola a inizio frase: «{good}»",
        "nospace": "aggiunto lo spazio mancante dopo il punto, prima di «{w}»",
    },
    "pl": {
        "q": [
            "Czy możesz poprawić błędy w tym tekście, nie zmieniając stylu?\n\n{text}",
            "Popraw literówki i interpunkcję w tym akapicie:\n\n{text}",
        ],
        "a": ["Oto poprawiony tekst:\n\n{clean}\n\n**Poprawki:**\n{changes}"],
        "swap": "„{bad}” → „{good}” (literówka)",
        "dup": "usunięto powtórzone słowo „{w}”",
        "lower": "wielka litera na początku zdania: „{good}”",
        "nospace": "dodano brakującą spację po kropce przed „{w}”",
    },
}

CW = {
    "en": {
        "task": [
            "Write a short overview of {name} for {aud}.",
            "Give me a brief explainer on {name} for {aud}.",
            "Summarise the key facts about {name} for {aud}.",
        ],
        "aud": [
            "a general audience",
            "a museum leaflet",
            "a school newsletter",
            "a pub quiz handout",
            "a travel blog",
            "new volunteers at a science centre",
        ],
        "bullets": "Use exactly {n} bullet points, formatted with '-'.",
        "paragraphs": "Write exactly {n} paragraphs, separated by the markdown divider ***.",
        "max_words": "Keep the whole response under {n} words.",
        "lowercase": "Your entire response must be in lowercase letters; no capitals at all.",
        "title": "Include a title wrapped in double angular brackets, such as <<my title>>.",
        "end_q": "Finish your response with a question to the reader.",
        "no_commas": "Do not use any commas.",
        "quotes": "Wrap your entire response in double quotation marks.",
        "keyword": 'Mention the word "{kw}" at least twice.',
        "titles": ["<<{title} in brief>>", "<<A quick guide: {title}>>", "<<{title}: the essentials>>"],
        "closing": [
            "Which of these facts surprised you most?",
            "What would you like to know next?",
            "Have you ever seen it for yourself?",
            "Which part would you like to explore further?",
        ],
    },
    "fr": {
        "task": [
            "Rédige un court texte de présentation sur {name} pour {aud}.",
            "Fais-moi un résumé des points essentiels sur {name} pour {aud}.",
        ],
        "aud": ["un large public", "une brochure de musée", "le journal d'une école"],
        "bullets": "Utilise exactement {n} puces commençant par « - ».",
        "paragraphs": "Écris exactement {n} paragraphes séparés par ***.",
        "max_words": "Ne dépasse pas {n} mots.",
        "lowercase": "Écris tout en minuscules, sans aucune majuscule.",
        "title": "Ajoute un titre entre doubles chevrons, par exemple <<mon titre>>.",
        "end_q": "Termine par une question au lecteur.",
        "titles": ["<<{title} en bref>>", "<<L'essentiel : {title}>>"],
        "closing": ["Quel aspect aimeriez-vous approfondir ?", "Saviez-vous déjà tout cela ?"],
    },
    "de": {
        "task": [
            "Schreib einen kurzen Überblick über {name} für {aud}.",
            "Fasse das Wichtigste über {name} für {aud} zusammen.",
        ],
        "aud": ["ein allgemeines Publikum", "eine Schülerzeitung", "einen Museumsflyer"],
        "bullets": "Verwende genau {n} Aufzählungspunkte mit „-“.",
        "paragraphs": "Schreibe genau {n} Absätze, getrennt durch ***.",
        "max_words": "Verwende höchstens {n} Wörter.",
        "title": "Beginne mit einem Titel in doppelten spitzen Klammern, etwa <<Titel>>.",
        "end_q": "Beende den Text mit einer Frage an die Leser.",
        "titles": ["<<{title} auf einen Blick>>", "<<Kurz erklärt: {title}>>"],
        "closing": ["Was davon war Ihnen neu?", "Welcher Aspekt interessiert Sie am meisten?"],
    },
    "es": {
        "task": [
            "Escribe una breve presentación sobre {name} para {aud}.",
            "Resume lo esencial sobre {name} para {aud}.",
        ],
        "aud": ["el público general", "un folleto de museo", "la revista del colegio"],
        "bullets": "Usa exactamente {n} viñetas que empiecen por «-».",
        "paragraphs": "Escribe exactamente {n} párrafos separados por ***.",
        "max_words": "No superes las {n} palabras.",
        "lowercase": "Escribe todo en minúsculas, sin ninguna mayúscula.",
        "title": "Incluye un título entre dobles corchetes angulares, como <<mi título>>.",
        "end_q": "Termina con una pregunta al lector.",
        "titles": ["<<{title} en pocas palabras>>", "<<Lo esencial: {title}>>"],
        "closing": ["¿Qué dato te ha sorprendido más?", "¿Qué te gustaría saber a continuación?"],
    },
}

# --------------------------------------------------------------------------------------------------
# Math word problems: seed articles (English), per-language query/answer text, reasoning text
# --------------------------------------------------------------------------------------------------

MATH_SEEDS = {
    "discount": T(
        "en",
        "Percentage",
        """
        A percentage is a number or ratio expressed as a fraction of 100, written with the sign %.
        To find a percentage of a quantity, the quantity is multiplied by the percentage divided by 100.
        Percentages are widely used for discounts, taxes, interest rates and statistics.
        A discount of 20 percent reduces a price to 80 percent of its original value, which corresponds to multiplying by 0.8.
        Successive percentage changes are combined by multiplying the corresponding factors, not by adding the percentages.
        For example, a rise of 10 percent followed by a fall of 10 percent leaves a value at 99 percent of where it started.
        Sales taxes and value-added taxes are normally calculated on the price actually charged, after any discount.
        The percentage point is a separate unit used for the arithmetic difference between two percentages.
        """,
    ),
    "speed": T(
        "en",
        "Speed",
        """
        In everyday use, speed is the distance travelled divided by the time taken.
        Average speed over a journey is the total distance divided by the total time, including any stops.
        In the International System of Units, speed is measured in metres per second, but kilometres per hour is common for road and rail travel.
        One kilometre per hour equals exactly 1000/3600 metres per second, or about 0.278 m/s.
        When time is given in hours and minutes, it is usually converted to decimal hours before dividing.
        Average speed is not, in general, the average of the speeds on different parts of a journey.
        For instance, driving one hour at 60 km/h and one hour at 100 km/h gives an average of 80 km/h, but covering equal distances at those speeds gives a lower average of 75 km/h.
        """,
    ),
    "equation": T(
        "en",
        "Linear equation",
        """
        A linear equation in one variable can be written in the form ax + b = 0, where a is not zero.
        Such an equation has exactly one solution, x = −b/a.
        Equations are solved by applying the same operation to both sides, which keeps them balanced.
        Typical steps are to collect the terms containing the unknown on one side and the constant terms on the other, and then to divide by the coefficient of the unknown.
        Substituting the solution back into the original equation is a simple way to check the result.
        Linear equations appear in many practical problems, such as comparing prices or mixing quantities.
        Methods for solving them were known in ancient Egypt, Babylon and China, while the modern symbolic notation developed much later in Europe.
        """,
    ),
    "fence": T(
        "en",
        "Perimeter",
        """
        The perimeter of a two-dimensional shape is the total length of its boundary.
        For a rectangle with length L and width W, the perimeter is 2(L + W), while its area is L × W.
        Perimeter is measured in units of length, such as metres, whereas area is measured in square units.
        Shapes with the same area can have very different perimeters; among rectangles of a given area, the square has the smallest perimeter.
        Perimeter calculations are used in practice to estimate the length of fencing, skirting boards or edging needed around a space.
        When part of the boundary, such as a gate or a doorway, does not need material, its width is subtracted from the total.
        """,
    ),
    "average": T(
        "en",
        "Arithmetic mean",
        """
        The arithmetic mean of a list of numbers is their sum divided by how many numbers there are.
        It is what most people mean by the average.
        If the desired mean of n values is known, their total must be n times that mean, which makes it possible to work out a missing value.
        The mean is sensitive to extreme values: a single very high or very low number can shift it noticeably.
        For this reason the median, the middle value of a sorted list, is sometimes preferred for skewed data such as incomes.
        Teachers often use the mean of several test scores to compute a final grade, sometimes with different weights for different tests.
        """,
    ),
    "interest": T(
        "en",
        "Compound interest",
        """
        Compound interest is interest calculated on the initial principal and also on the interest accumulated in earlier periods.
        With annual compounding, a principal P invested at a yearly rate r grows to P(1 + r)^n after n years.
        Simple interest, by contrast, is paid only on the original principal and grows linearly, reaching P(1 + rn).
        The difference between the two is small over short periods but becomes large over decades.
        A rough rule of thumb, the rule of 72, estimates the number of years needed to double an investment by dividing 72 by the interest rate in percent.
        Interest can also be compounded more often, such as monthly or daily, which slightly increases the effective yearly rate.
        """,
    ),
    "work": T(
        "en",
        "Work (rate problems)",
        """
        In rate problems, the amount of work done equals the rate of work multiplied by the time spent.
        If a machine or worker completes a job in t hours, its rate is 1/t of the job per hour.
        When several agents work together on the same task, their rates add, but their times do not.
        The combined time is therefore the reciprocal of the sum of the individual rates.
        Two pipes that fill a tank in 3 hours and 6 hours respectively fill half of it per hour together, so they need 2 hours.
        A useful sanity check is that the combined time must always be shorter than the time of the fastest agent working alone.
        Problems of this type have appeared in arithmetic textbooks for centuries.
        """,
    ),
    "probability": T(
        "en",
        "Hypergeometric distribution",
        """
        In probability, drawing without replacement means that an item, once drawn, is not returned before the next draw.
        As a result, the probabilities change from one draw to the next, and the draws are not independent.
        The probability of a sequence of events can be found by multiplying conditional probabilities: the probability of the first event times the probability of the second given the first.
        The same result can be obtained by counting combinations, dividing the number of favourable selections by the total number of possible selections.
        The number of ways to choose k items from n is written as the binomial coefficient C(n, k).
        The hypergeometric distribution describes the number of successes in a fixed number of draws made without replacement from a finite population.
        Complementary events are often easier to compute: the probability that something happens is one minus the probability that it does not.
        """,
    ),
}

MATH_NAMES = {
    "en": ["Maya", "Daniel", "Priya", "Tom", "Aisha", "Lucas", "Hannah", "Omar", "Grace", "Ben"],
    "fr": ["Camille", "Louis", "Inès", "Hugo"],
    "de": ["Jonas", "Lena", "Mia", "Felix"],
    "es": ["Lucía", "Mateo", "Carmen", "Diego"],
    "it": ["Giulia", "Marco", "Sara"],
    "pl": ["Zofia", "Jakub", "Ola"],
    "pt": ["Inês", "João"],
    "nl": ["Sanne", "Daan"],
}
MATH_ITEMS = {
    "en": ["jacket", "pair of headphones", "desk lamp", "backpack", "bicycle helmet", "coffee grinder"],
    "fr": ["manteau", "vélo", "casque audio", "sac à dos"],
    "de": ["Jacke", "Kaffeemaschine", "Stehlampe", "Reisetasche"],
    "es": ["chaqueta", "mochila", "lámpara", "cafetera"],
    "it": ["giacca", "borsa", "lampada", "bicicletta"],
    "pt": ["casaco", "candeeiro", "relógio"],
}

MATH_Q = {
    "en": {
        "discount": [
            "A {item} costs {P}. It's on sale for {d}% off, and then {t}% sales tax is added to the sale price. What does {name} pay at the till?",
            "{name} buys a {item} priced at {P}. The shop takes {d}% off, and {t}% tax is charged on the discounted price. What is the final price?",
        ],
        "speed": [
            "A train covers {D} km in {T}. What is its average speed? At the same speed, how long would it take to travel {D2} km?",
            "{name} drives {D} km in {T}. What was the average speed, and how long would {D2} km take at that speed?",
        ],
        "equation": ["Solve for x: {eq}", "Find x if {eq}. Show your steps.", "solve {eq} pls"],
        "fence": [
            "{name} wants to fence a rectangular garden {L} m long and {W} m wide, leaving a {g} m gap for a gate. Fencing costs {c} per metre. How many metres of fencing are needed, what will it cost, and what is the garden's area?"
        ],
        "average": [
            "{name} scored {s} on four tests. What score does {name} need on the fifth test to finish with an average of exactly {T}?"
        ],
        "interest": [
            "{name} puts {P} into a savings account paying {r}% interest per year, compounded annually. How much will be in the account after {n} years if nothing is withdrawn? How does that compare with simple interest?"
        ],
        "work": [
            "Pipe A can fill a tank in {a} hours on its own, and pipe B can fill it in {b} hours. How long does it take to fill the tank with both pipes open?"
        ],
        "probability": [
            "A bag contains {r} red marbles and {b} blue marbles. Two marbles are drawn at random without replacement. What is the probability that both are red?"
        ],
    },
    "fr": {
        "discount": [
            "Un {item} coûte {P}. Il est soldé à {d}\u00a0%, puis une taxe de {t}\u00a0% est appliquée sur le prix soldé. Quel est le prix final payé par {name} ?"
        ],
        "speed": [
            "Un train parcourt {D} km en {T}. Quelle est sa vitesse moyenne ? À cette vitesse, combien de temps lui faudrait-il pour parcourir {D2} km ?"
        ],
        "equation": ["Résous l'équation {eq} et vérifie ta solution."],
    },
    "de": {
        "discount": [
            "Eine {item} kostet {P}. Sie wird um {d}\u00a0% reduziert, anschließend kommen {t}\u00a0% Steuer auf den reduzierten Preis. Wie viel zahlt {name} insgesamt?"
        ],
        "equation": ["Löse die Gleichung {eq} nach x auf."],
        "fence": [
            "{name} möchte einen rechteckigen Garten von {L} m Länge und {W} m Breite einzäunen und dabei eine {g} m breite Lücke für ein Tor lassen. Der Zaun kostet {c} pro Meter. Wie viel Zaun wird benötigt, was kostet er, und wie groß ist die Gartenfläche?"
        ],
    },
    "es": {
        "discount": [
            "Una {item} cuesta {P}. Tiene un descuento del {d}\u00a0% y después se aplica un impuesto del {t}\u00a0% sobre el precio rebajado. ¿Cuánto paga {name} en total?"
        ],
        "speed": [
            "Un tren recorre {D} km en {T}. ¿Cuál es su velocidad media? A esa velocidad, ¿cuánto tardaría en recorrer {D2} km?"
        ],
        "average": [
            "{name} ha sacado {s} en cuatro exámenes. ¿Qué nota necesita en el quinto para terminar con una media de exactamente {T}?"
        ],
    },
    "it": {
        "discount": [
            "Una {item} costa {P}. È scontata del {d}% e poi si applica un'imposta del {t}% sul prezzo scontato. Quanto paga {name} in totale?"
        ],
        "equation": ["Risolvi l'equazione {eq}."],
    },
    "pl": {
        "speed": [
            "Pociąg pokonuje {D} km w czasie {T}. Jaka jest jego średnia prędkość? Ile czasu zajmie mu przejechanie {D2} km z tą samą prędkością?"
        ],
        "equation": ["Rozwiąż równanie {eq}."],
    },
    "pt": {
        "discount": [
            "Um {item} custa {P}. Tem um desconto de {d}% e depois é aplicado um imposto de {t}% sobre o preço com desconto. Quanto paga {name} no total?"
        ],
        "equation": ["Resolve a equação {eq}."],
    },
    "nl": {
        "speed": [
            "Een trein legt {D} km af in {T}. Wat is de gemiddelde snelheid? Hoe lang doet de trein met dezelfde snelheid over {D2} km?"
        ],
        "equation": ["Los de vergelijking {eq} op."],
    },
    "ja": {"equation": ["方程式 {eq} を解いてください。"]},
    "zh": {"equation": ["解方程：{eq}"]},
}

MATH_A = {
    "en": {
        "discount": "{name} pays **{final}**.\n\n- Discount: {d}% of {P} = {disc}, so the sale price is {sale}.\n- Tax: {t}% of {sale} = {tax}.\n- Final price: {sale} + {tax} = {final}.\n\nShortcut: {P} × {m1} × {m2} = {final}.",
        "speed": "**Average speed: {v} km/h.**\n\n- Time: {T} = {th} h\n- Speed: {D} km ÷ {th} h = {v} km/h\n- Time for {D2} km: {D2} ÷ {v} = {t2h} h, i.e. **{T2}**",
        "fence": "**{fence} m of fencing, costing {cost}.**\n\n- Perimeter: 2 × ({L} + {W}) = {per} m\n- Minus the {g} m gate: {per} − {g} = {fence} m\n- Cost: {fence} × {c} = {cost}\n- Area: {L} × {W} = {area} m²",
        "average": "{name} needs **{need}** on the fifth test.\n\nFor an average of {T} over five tests, the total must be 5 × {T} = {tot}. The first four add up to {sum}, so the fifth must be {tot} − {sum} = {need}.\n\nCheck: ({s_plus} + {need}) ÷ 5 = {T} ✓",
        "interest": "After {n} years the balance is **{A}**.\n\nUsing $A = P(1+r)^n$: {P} × {growth}^{n} ≈ {A}. That is {interest} of interest, {diff} more than simple interest would give ({simple}).",
        "work": "With both pipes open, the tank fills in **{hm}**.\n\nPipe A fills 1/{a} of the tank per hour and pipe B fills 1/{b}, so together they fill {frac} of the tank per hour. The time is the reciprocal: {inv} h = {hm}.",
        "probability": "P(both red) = **{simp}** ≈ {dec}.\n\nFirst draw: {r}/{n}. Second draw, given the first was red: {r1}/{n1}. Multiplying: {r}/{n} × {r1}/{n1} = {num}/{den} = {simp}.",
    },
    "fr": {
        "discount": "Le prix final est de **{final}**.\n\n- Remise : {d}\u00a0% de {P} = {disc}, donc le prix soldé est de {sale}.\n- Taxe : {t}\u00a0% de {sale} = {tax}.\n- Prix final : {sale} + {tax} = {final}.\n\nVérification rapide : {P} × {m1} × {m2} = {final}.",
        "speed": "**Vitesse moyenne : {v} km/h.**\n\n- Durée : {T} = {th} h\n- Vitesse : {D} ÷ {th} = {v} km/h\n- Pour {D2} km : {D2} ÷ {v} = {t2h} h, soit **{T2}**",
    },
    "de": {
        "discount": "{name} zahlt **{final}**.\n\n- Rabatt: {d}\u00a0% von {P} = {disc}, reduzierter Preis also {sale}.\n- Steuer: {t}\u00a0% von {sale} = {tax}.\n- Endpreis: {sale} + {tax} = {final}.\n\nProbe: {P} · {m1} · {m2} = {final}.",
        "fence": "**{fence} m Zaun für {cost}.**\n\n- Umfang: 2 · ({L} + {W}) = {per} m\n- Abzüglich Tor: {per} − {g} = {fence} m\n- Kosten: {fence} · {c} = {cost}\n- Fläche: {L} · {W} = {area} m²",
    },
    "es": {
        "discount": "{name} paga **{final}**.\n\n- Descuento: el {d}\u00a0% de {P} es {disc}, así que el precio rebajado es {sale}.\n- Impuesto: el {t}\u00a0% de {sale} es {tax}.\n- Precio final: {sale} + {tax} = {final}.\n\nComprobación: {P} × {m1} × {m2} = {final}.",
        "speed": "**Velocidad media: {v} km/h.**\n\n- Tiempo: {T} = {th} h\n- Velocidad: {D} ÷ {th} = {v} km/h\n- Para {D2} km: {D2} ÷ {v} = {t2h} h, es decir, **{T2}**",
        "average": "{name} necesita **{need}** en el quinto examen.\n\nPara una media de {T} en cinco exámenes, la suma total debe ser 5 × {T} = {tot}. Los cuatro primeros suman {sum}, así que el quinto debe ser {tot} − {sum} = {need}.\n\nComprobación: ({s_plus} + {need}) ÷ 5 = {T} ✓",
    },
    "it": {
        "discount": "{name} paga **{final}**.\n\n- Sconto: il {d}% di {P} è {disc}, quindi il prezzo scontato è {sale}.\n- Imposta: il {t}% di {sale} è {tax}.\n- Prezzo finale: {sale} + {tax} = {final}."
    },
    "pl": {
        "speed": "**Średnia prędkość: {v} km/h.**\n\n- Czas: {T} = {th} h\n- Prędkość: {D} : {th} = {v} km/h\n- Dla {D2} km: {D2} : {v} = {t2h} h, czyli **{T2}**"
    },
    "pt": {
        "discount": "{name} paga **{final}**.\n\n- Desconto: {d}% de {P} = {disc}, logo o preço com desconto é {sale}.\n- Imposto: {t}% de {sale} = {tax}.\n- Preço final: {sale} + {tax} = {final}."
    },
    "nl": {
        "speed": "**Gemiddelde snelheid: {v} km/u.**\n\n- Tijd: {T} = {th} uur\n- Snelheid: {D} : {th} = {v} km/u\n- Voor {D2} km: {D2} : {v} = {t2h} uur, dus **{T2}**"
    },
}

# Words used when the equation answer is assembled: intro, divide, check, solution, closing.
EQ_WORDS = {
    "en": (
        "Collect the x-terms on the left and the constants on the right:",
        "Divide both sides by {k}:",
        "Check",
        "Solution",
        "Both sides equal {val}, so the solution is correct.",
    ),
    "fr": (
        "On regroupe les termes en x à gauche et les constantes à droite :",
        "On divise les deux membres par {k} :",
        "Vérification",
        "Solution",
        "Les deux membres valent {val} : la solution est correcte.",
    ),
    "de": (
        "x-Terme nach links, Zahlen nach rechts:",
        "Beide Seiten durch {k} teilen:",
        "Probe",
        "Lösung",
        "Beide Seiten ergeben {val}, die Lösung stimmt.",
    ),
    "it": (
        "Portiamo i termini con la x a sinistra e i numeri a destra:",
        "Dividiamo entrambi i membri per {k}:",
        "Verifica",
        "Soluzione",
        "Entrambi i membri valgono {val}, quindi la soluzione è corretta.",
    ),
    "pl": (
        "Przenosimy wyrazy z x na lewą stronę, a liczby na prawą:",
        "Dzielimy obie strony przez {k}:",
        "Sprawdzenie",
        "Rozwiązanie",
        "Obie strony są równe {val}, więc rozwiązanie jest poprawne.",
    ),
    "pt": (
        "Passamos os termos em x para a esquerda e as constantes para a direita:",
        "Dividimos ambos os membros por {k}:",
        "Verificação",
        "Solução",
        "Ambos os membros valem {val}, portanto a solução está correta.",
    ),
    "nl": (
        "Breng de x-termen naar links en de getallen naar rechts:",
        "Deel beide kanten door {k}:",
        "Controle",
        "Oplossing",
        "Beide kanten zijn {val}, dus de oplossing klopt.",
    ),
    "ja": (
        "xの項を左辺に、定数を右辺に移項します。",
        "両辺を{k}で割ります。",
        "検算",
        "答え",
        "両辺とも{val}になるので、この解は正しいです。",
    ),
    "zh": (
        "把含x的项移到左边，常数移到右边：",
        "两边同时除以{k}：",
        "检验",
        "答案",
        "两边都等于{val}，所以解是正确的。",
    ),
}

MATH_R = {
    "en": {
        "discount": """We need the final price of the {item}: list price {P}, {d}% off, then {t}% tax charged on the discounted price.

Order matters for the *base* of each percentage, so:

**Step 1, discount.** {d}% of {P}:
$$ {Praw} \\times {dec_d} = {disc_raw} $$
Sale price: {P} − {disc} = {sale}.

**Step 2, tax** on the sale price, not on the original:
$$ {sale_raw} \\times {dec_t} = {tax_raw} $$
{round_note}Final: {sale} + {tax} = {final}.

Check with multipliers: {Praw} × {m1} × {m2} = {final_raw}. Same result ✓ And since multiplication commutes, applying the tax first and the discount second would give the same total.

Trap to avoid: netting the percentages ({d}% − {t}% = {wrongpct}% off) gives {wrong}, which is wrong because the tax is applied to a smaller base than the discount.

Answer: {final}.""",
        "speed": """Two parts: average speed, then travel time for {D2} km at that speed.

Convert the time to hours first. {T} = {h} h + {m}/60 h = {th} h (that's {tmin} minutes).

Average speed:
$$ v = \\frac{{d}}{{t}} = \\frac{{{D}}}{{{th}}} = {v}\\ \\text{{km/h}} $$

Quick check: {v} km/h × {th} h = {D} km ✓

Second part: time = distance ÷ speed = {D2} ÷ {v} = {t2h} h.
Convert: {t2h} h = {t2min} minutes = {T2}.

Sanity: {D2} km is {cmp} than {D} km, so the time should be {cmp2} than {T}; {T2} fits.

So: average speed {v} km/h, and {T2} for {D2} km.""",
        "equation": """Linear equation in one unknown: {eq}.

Plan: all x-terms on one side, constants on the other, then divide.

Subtract {C}x from both sides:
{step1}
{step_b}
{step2}
Divide by {k}:
$$ x = \\frac{{{r}}}{{{k}}} = {x} $$

Verify by substituting x = {x}:
- left: {lhs}
- right: {rhs}
Both sides equal {val} ✓

x = {x}.""",
        "fence": """Rectangle {L} m × {W} m, gate gap {g} m, fencing {c} per metre. Three things are asked: fencing length, cost, area.

Perimeter of a rectangle: $P = 2(L + W) = 2({L} + {W}) = {per}$ m.
The gate isn't fenced, so subtract it: {per} − {g} = {fence} m.

Cost: {fence} m × {c} per metre = {cost}.
Double-check the multiplication: {fence} × {c_raw} = {cost_raw} ✓

Area (the gate doesn't change it): {L} × {W} = {area} m².

Units: metres for the fence, square metres for the area, currency for the cost. All consistent.

Answer: {fence} m of fencing costing {cost}; area {area} m².""",
        "average": """For an average of {T} over five tests, the total must be $5 \\times {T} = {tot}$.

Scores so far: {s_plus} = {sum}.
Needed on test five: {tot} − {sum} = {need}.

Is that achievable? Yes, {need} is within the usual 0 to 100 range.

Verify: ({s_plus} + {need}) / 5 = {tot} / 5 = {T} ✓

Answer: {need}.""",
        "interest": """Compound interest, compounded once a year: $A = P(1 + r)^n$ with P = {P}, r = {r}% = {rdec}, n = {n}.

Year by year (rounded to the cent for display, full precision in the calculation):

| Year | Balance at end of year |
|---|---|
{table}

So A ≈ {A}.
Closed-form check: {Praw} × {growth}^{n} = {Praw} × {factor} ≈ {A_raw} ✓

Interest earned: {A} − {P} = {interest}.
For comparison, simple interest would give {P} × {rdec} × {n} = {simple}, so compounding adds {diff}.

Answer: {A} after {n} years.""",
        "work": """Rates add, times don't. Pipe A fills 1/{a} of the tank per hour, pipe B fills 1/{b}.

Together:
$$ \\frac{{1}}{{{a}}} + \\frac{{1}}{{{b}}} = \\frac{{{a_plus_b}}}{{{ab}}} = {frac} $$
of the tank per hour.

Time = reciprocal = {inv} h = {hm}.

Sanity check: the combined time must be less than the faster pipe alone ({fast} h). {hm} < {fast} h ✓
Another check: in {inv} h, pipe A does {inv}/{a} and pipe B does {inv}/{b} of the tank, and {part_a} + {part_b} = 1 ✓

Answer: {hm}.""",
        "probability": """Two marbles drawn without replacement from {r} red and {b} blue ({n} in total). We want P(both red).

First draw red: {r}/{n}.
Given that, second draw red: {r1}/{n1} (one red fewer, one marble fewer).

$$ P = \\frac{{{r}}}{{{n}}} \\times \\frac{{{r1}}}{{{n1}}} = \\frac{{{num}}}{{{den}}} = {simp} $$

Cross-check with combinations: $\\binom{{{r}}}{{2}} / \\binom{{{n}}}{{2}} = {cr2}/{cn2} = {simp}$ ✓

As a decimal ≈ {dec}. And P(at least one blue) = 1 − {simp} = {comp}.

Answer: {simp}.""",
    },
    "fr": {
        "discount": """Il faut le prix final : {P}, remise de {d}\u00a0%, puis taxe de {t}\u00a0% sur le prix remisé.

**Étape 1 : la remise.** {d}\u00a0% de {P} = {P} × {dec_d} = {disc}.
Prix soldé : {P} − {disc} = {sale}.

**Étape 2 : la taxe**, calculée sur le prix soldé et non sur le prix initial : {sale} × {dec_t} = {tax}.
Total : {sale} + {tax} = {final}.

Vérification par coefficients multiplicateurs : {P} × {m1} × {m2} = {final} ✓

Piège classique : calculer {d}\u00a0% − {t}\u00a0% = {wrongpct}\u00a0% de réduction, ce qui donnerait {wrong}. C'est faux, car les deux pourcentages ne portent pas sur la même base.

Réponse : {final}.""",
        "speed": """Deux questions : la vitesse moyenne, puis la durée pour {D2} km.

Conversion de la durée en heures : {T} = {th} h.
Vitesse moyenne : v = d / t = {D} / {th} = {v} km/h.
Contrôle : {v} × {th} = {D} km ✓

Pour {D2} km : t = {D2} / {v} = {t2h} h, soit {T2}.
Cohérence : la distance est {cmp}, donc la durée aussi ✓

Réponse : {v} km/h ; {T2}.""",
        "equation": """Équation du premier degré : {eq}.

On regroupe les termes en x à gauche en retirant {C}x des deux côtés :
{step1}
{step_b}
{step2}
On divise par {k} : x = {r} / {k} = {x}.

Vérification avec x = {x} :
- à gauche : {lhs}
- à droite : {rhs}
Les deux membres sont égaux ✓

Solution : x = {x}.""",
    },
    "de": {
        "discount": """Gesucht ist der Endpreis: {P}, {d}\u00a0% Rabatt, danach {t}\u00a0% Steuer auf den reduzierten Preis.

**Schritt 1: Rabatt.** {d}\u00a0% von {P} = {P} · {dec_d} = {disc}.
Reduzierter Preis: {P} − {disc} = {sale}.

**Schritt 2: Steuer**, und zwar auf den reduzierten Preis, nicht auf den ursprünglichen: {sale} · {dec_t} = {tax}.
Endpreis: {sale} + {tax} = {final}.

Probe mit Faktoren: {P} · {m1} · {m2} = {final} ✓

Typischer Fehler: {d}\u00a0% − {t}\u00a0% = {wrongpct}\u00a0% Rabatt rechnen, das ergäbe {wrong}. Falsch, weil sich die Prozentsätze auf verschiedene Grundwerte beziehen.

Antwort: {final}.""",
        "equation": """Lineare Gleichung: {eq}.

x-Terme nach links: auf beiden Seiten {C}x abziehen.
{step1}
{step_b}
{step2}
Durch {k} teilen: x = {r} : {k} = {x}.

Probe mit x = {x}:
- links: {lhs}
- rechts: {rhs}
Beide Seiten stimmen überein ✓

Lösung: x = {x}.""",
        "fence": """Rechteck {L} m × {W} m, Tor {g} m, Zaun {c} pro Meter. Gefragt: Zaunlänge, Kosten, Fläche.

Umfang: U = 2 · (L + B) = 2 · ({L} + {W}) = {per} m.
Das Tor wird nicht eingezäunt: {per} − {g} = {fence} m.

Kosten: {fence} · {c} = {cost}.
Nachrechnen: {fence} · {c_raw} = {cost_raw} ✓

Fläche: {L} · {W} = {area} m² (das Tor ändert daran nichts).

Antwort: {fence} m Zaun für {cost}; Fläche {area} m².""",
    },
    "es": {
        "discount": """Hay que calcular el precio final: {P}, descuento del {d}\u00a0% y después un impuesto del {t}\u00a0% sobre el precio rebajado.

**Paso 1: el descuento.** El {d}\u00a0% de {P} = {P} × {dec_d} = {disc}.
Precio rebajado: {P} − {disc} = {sale}.

**Paso 2: el impuesto**, sobre el precio rebajado y no sobre el original: {sale} × {dec_t} = {tax}.
Total: {sale} + {tax} = {final}.

Comprobación con factores: {P} × {m1} × {m2} = {final} ✓

Error típico: restar los porcentajes ({d}\u00a0% − {t}\u00a0% = {wrongpct}\u00a0%) daría {wrong}, lo cual es incorrecto porque cada porcentaje se aplica sobre una base distinta.

Respuesta: {final}.""",
        "speed": """Dos preguntas: la velocidad media y luego el tiempo para {D2} km.

Paso el tiempo a horas: {T} = {th} h.
Velocidad media: v = d / t = {D} / {th} = {v} km/h.
Control: {v} × {th} = {D} km ✓

Para {D2} km: t = {D2} / {v} = {t2h} h, es decir, {T2}.
Coherencia: la distancia es {cmp}, y el tiempo también ✓

Respuesta: {v} km/h; {T2}.""",
        "average": """Para una media de {T} en cinco exámenes, la suma total tiene que ser 5 × {T} = {tot}.

Notas hasta ahora: {s_plus} = {sum}.
Falta en el quinto: {tot} − {sum} = {need}.

¿Es posible? Sí, {need} está dentro del rango habitual de 0 a 100.

Comprobación: ({s_plus} + {need}) / 5 = {tot} / 5 = {T} ✓

Respuesta: {need}.""",
    },
}

# --------------------------------------------------------------------------------------------------
# Creative writing pieces (hand-written). Reasoning is assembled around their plan/anchor notes.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    lang: str
    q: str
    form: str
    tone: str
    images: tuple[str, ...]
    plan: tuple[str, ...]
    text: str
    seed: str | None  # title of the topic used as seed, or None


def P(lang, q, form, tone, images, plan, text, seed=None) -> Piece:
    return Piece(lang, q, form, tone, tuple(images), tuple(plan), textwrap.dedent(text).strip(), seed)


PIECES = [
    P(
        "en",
        "Write a short free-verse poem about a lighthouse keeper on the last night before the light is automated.",
        "free verse, six short stanzas",
        "quiet, elegiac, a little wry",
        [
            "the stairs and the ritual of climbing them",
            "the beam as a long white arm",
            "the technician's box of switches",
            "fog arriving like a friend who has heard the news",
        ],
        [
            "establish the ritual (climbing, counting steps)",
            "the lamp doesn't know it's being replaced",
            "tomorrow: the man from the mainland",
            "tonight: small stubborn acts of care",
            "close with fog and the keeper keeping the light together",
        ],
        """
        **Last Watch**

        Tonight I climb the hundred and twelve steps
        the way my father taught me:
        left hand on the rail, right hand on the hour.

        The lamp does not know it is being replaced.
        It turns the way it always turned,
        throwing its long white arm across the water
        as if someone out there were still counting on it.

        Tomorrow a man from the mainland
        will bring a box of switches and a kind voice.
        He will say *it runs itself now*,
        and he will be right.

        But tonight the ships are mine.
        I log the wind. I wipe the glass.
        I make the tea too strong, on purpose.

        At four the fog comes in like an old friend
        who has heard the news.
        We sit together, the fog and I,
        and keep the light.
        """,
        "Lighthouse of Alexandria",
    ),
    P(
        "en",
        "Write the opening of a mystery story (about 200 words) set in a rainy harbour town. Start with a message in a bottle.",
        "prose, story opening of about 200 words",
        "atmospheric, dry humour, building unease",
        [
            "the Tuesday tide",
            "green glass and red wax",
            "a dead harbourmaster's seal",
            "the detective's own name inside the bottle",
        ],
        [
            "hook in the first line (the bottle and the wrong day)",
            "a local character brings it in, with a bit of humour",
            "the seal: the harbourmaster is dead",
            "end the opening on a personal threat",
        ],
        """
        The bottle came in on the Tuesday tide, which was the first thing that bothered Inspector Hale about it. Nothing useful ever arrived on a Tuesday.

        Mrs Pengelly from the fish stall brought it to the station wrapped in yesterday's paper, holding it the way you'd hold a cat that had once bitten you. "It was knocking against the slipway," she said. "Like it wanted letting in."

        The glass was green and thick, the kind they hadn't made in Porthwenna for forty years. The cork had been sealed with red wax, and pressed into the wax, quite clearly, was the harbourmaster's seal.

        The harbourmaster had been dead since March.

        Hale set the bottle on his desk, under the lamp, and watched the rain run down the window behind it. Inside, rolled tight as a cigarette, was a single sheet of paper. He could see handwriting through the glass: small, careful, slanting to the left.

        He could also see that the first word was his own name.

        He put on his gloves, and for the first time in eleven years he locked his office door before opening anything.
        """,
    ),
    P(
        "en",
        "write two limericks about my cat 🐱 who hates mondays",
        "two limericks (AABBA)",
        "light, silly",
        ["Monday sulking", "knocking things off surfaces", "demanding food", "Tuesday amnesia"],
        [
            "no name given, so invent one that rhymes easily",
            "limerick 1: the Monday rage",
            "limerick 2: the sulk and the recovery",
            "keep the anapaestic bounce",
        ],
        """
        **I.**
        There once was a cat named Marie
        Who despised every Monday at three.
        She would yowl at the clock,
        Knock the keys off the lock,
        Then demand to be fed "urgently."

        **II.**
        On Mondays she sulks on the mat
        With the air of a put-upon cat.
        But by Tuesday at noon
        She is humming a tune,
        And she's kind of forgotten all that. 🐾
        """,
    ),
    P(
        "en",
        "Write a product description (around 120 words) for a fictional loose-leaf tea called Harbour Fog. It's a black tea with bergamot and lavender.",
        "marketing copy, about 120 words",
        "warm, sensory, concise",
        ["slow mornings", "mist over still water", "citrus then floral", "brewing instructions"],
        [
            "a one-line mood hook",
            "what's in it and how it tastes",
            "how to brew it",
            "practical details (tin, weight, caffeine)",
        ],
        """
        **Harbour Fog, Loose-Leaf Black Tea**

        Some mornings arrive slowly, and this tea is made for them.

        Harbour Fog blends a full-bodied black tea with cold-pressed bergamot and a whisper of lavender from small farms in Provence. The result is bright but gentle: citrus first, then a soft floral note that lingers like mist over still water.

        Brew one heaped teaspoon per cup at 95 °C for three to four minutes. Enjoy it as it is, or add a splash of steamed milk and a little vanilla for a London-style latte.

        Packed in a resealable tin that keeps the leaves fresh for up to a year.

        *Contains 100 g, about 40 cups. Naturally caffeinated.* ☕
        """,
        "Tea",
    ),
    P(
        "en",
        "Write a letter from Mount Vesuvius to the people of Pompeii, written the night before the eruption of 79 AD. Make it a bit melancholy.",
        "epistolary prose, first person (the mountain)",
        "melancholy, tender, not melodramatic",
        [
            "vines planted in ash",
            "strange-tasting wells and restless dogs",
            "bread left in the oven",
            "keeping what they leave behind",
        ],
        [
            "the mountain addresses the town: you stopped noticing me",
            "the warnings they ignored",
            "no anger, it is what it is",
            "practical plea: go to the sea",
            "the preservation twist at the end",
        ],
        """
        To the people of Pompeii,

        You have lived on my shoulders for so long that you no longer notice my weight. You plant your vines in my ash and praise the wine. You build your baths and your bakeries, paint your walls red and gold, and never once look up.

        I have tried to tell you. The wells have tasted strange for weeks. The ground has shivered under your carts. Your dogs have been restless at night, and you have scolded them for it.

        I am not angry with you. I want you to understand that. What happens tomorrow is not a punishment; it is simply what I am. A mountain cannot apologise for being a mountain.

        But if you read this, take your children and walk towards the sea. Do not stop for the silver. Do not go back for the bread still in the oven.

        I will keep what you leave behind. I will keep it very carefully, for a very long time, until someone comes to dig it out and wonder who you were.

        With something like love,
        The Mountain
        """,
        "Mount Vesuvius",
    ),
    P(
        "en",
        "Write a short fable about a honeybee and an octopus, with a moral at the end.",
        "fable with an explicit moral",
        "gentle, classic fable voice",
        [
            "a storm-blown bee on a plank",
            "the waggle dance on wet wood",
            "the octopus reading the sun",
            "clover on the cliffs",
        ],
        [
            "set-up: the bee is lost at sea",
            "the octopus offers help",
            "the bee dances; the octopus understands it",
            "the journey and arrival",
            "twist in the thanks, then the moral",
        ],
        """
        A honeybee, blown far out to sea by a summer storm, landed exhausted on a floating plank. Beneath the plank lived an octopus, who raised one curious arm out of the water.

        "You look tired," said the octopus. "Where is your hive?"

        "Somewhere past the horizon," said the bee. "But I can't tell which way. At home I would simply dance, and my sisters would know."

        "Dance for me, then," said the octopus.

        So the bee danced: a little figure of eight on the wet wood, waggling along the middle line. The octopus watched with both great eyes, and because it was clever and patient, it understood. It turned the plank until the sun sat just where the dance said it should, and then it swam, pushing the plank before it, all through the afternoon.

        By evening they reached the shore, and the smell of clover drifted down from the cliffs.

        "How can I repay you?" asked the bee.

        "You already have," said the octopus. "No one has ever told me the way home before."

        *Moral: Even a language no one else speaks is worth speaking; somewhere, someone may be learning it.*
        """,
        "Western honey bee",
    ),
    P(
        "en",
        "Write a funny short dialogue between two astronauts on the space station arguing about who ate the last freeze-dried strawberry.",
        "script-style dialogue",
        "deadpan comedy",
        [
            "counting packets twice",
            "things that float away come back",
            "blaming Houston",
            "a crumb 'moon' in orbit",
        ],
        [
            "open mid-accusation",
            "escalating excuses",
            "the visual evidence (crumb orbiting her head)",
            "button: Houston already knows",
        ],
        """
        **KOVAC:** Rina. The strawberries.

        **RINA:** What about them?

        **KOVAC:** There were four packets on Monday. I have counted. I have counted twice.

        **RINA:** Maybe they floated away.

        **KOVAC:** Into *where*? We live in a tin can. Everything that floats away comes back to hit me in the ear at three in the morning.

        **RINA:** That's a good point, actually.

        **KOVAC:** So where is the last packet?

        **RINA:** Have you considered the possibility that Houston ate it?

        **KOVAC:** Houston is four hundred kilometres below us.

        **RINA:** Houston is very resourceful.

        **KOVAC:** Rina, there is a pink crumb orbiting your head.

        **RINA:** *(pause)* That's a moon.

        **KOVAC:** It's a strawberry.

        **RINA:** It's a small, strawberry-coloured moon, and it is under my jurisdiction.

        **KOVAC:** I'm logging this.

        **RINA:** Log it. Mission Control will side with me. They always do.

        **KOVAC:** *(into headset)* Houston, we have a problem.

        **HOUSTON:** *(static)* ...Is it the strawberries again?
        """,
    ),
    P(
        "en",
        "Write a sequence of five haiku about tides.",
        "five haiku, 5-7-5",
        "observational, calm",
        [
            "the moon lifting the harbour",
            "a crab's track at low tide",
            "the sea forgetting and remembering the shore",
            "spring tide over the jetty steps",
            "neap tide as sleep-breathing",
        ],
        [
            "one haiku per tidal idea: pull, low tide, the cycle, spring tide, neap tide",
            "lowercase, no titles beyond numbering",
            "count syllables on every line",
        ],
        """
        *i.*
        the moon leans closer
        and all of the grey harbour
        lifts its shoulders up

        *ii.*
        low tide at sunrise
        a crab writes its own slow name
        across the wet sand

        *iii.*
        twice a day the sea
        forgets the shore, remembers
        again and again

        *iv.*
        spring tide, full moon high
        the old jetty's lowest step
        goes under, shining

        *v.*
        the beach in neap days
        hardly moving, like someone
        breathing in their sleep
        """,
        "Tide",
    ),
    P(
        "en",
        "Write a short toast for the retirement party of Margaret, our school librarian for 31 years. Warm, a bit funny, under 200 words.",
        "spoken toast, under 200 words",
        "warm, affectionate, lightly funny",
        ["overdue books", "kind shushing", "a rescued hamster", "no late fees"],
        [
            "open with a joke that includes the audience",
            "what she did for 31 years, with one absurd specific",
            "what she taught the adults",
            "wish and raise glasses",
        ],
        """
        Good evening, everyone, and thank you for coming, even those of you who still have overdue books. Margaret knows who you are. Margaret has always known.

        For thirty-one years, Margaret has been the quiet heart of this school. She has found the right book for the wrong mood more times than any of us can count. She has taught three generations of students that *shh* can be said kindly. She has rescued term papers, science projects and, on one occasion, a hamster.

        She also taught the rest of us something: that paying attention to people is a form of generosity. Every child who walked into that library felt noticed. Most of them left carrying something heavier than when they arrived, and happier for it.

        Margaret, the shelves will miss you. We will miss you more. We hope your retirement is full of long mornings, good endings and no late fees whatsoever.

        Please raise your glasses: to Margaret!
        """,
    ),
    P(
        "en",
        "Can you write a bedtime story for a 5-year-old about a little cloud who wants to become a river?",
        "bedtime story, simple sentences",
        "soothing, playful",
        ["Puff the cloud", "the singing river", "the wise Wind", "pitter-patter rain"],
        [
            "introduce Puff and his wish",
            "the Wind's advice: rivers start as rain",
            "the brave letting go and the journey down",
            "the water cycle brings him back",
            "sleepy ending with a new wish",
        ],
        """
        Once upon a time, high above a green valley, there lived a little cloud called Puff.

        Puff was small and soft, and every day he floated over the valley and looked down at the river. The river was long and shiny, and it sang as it ran. Ducks rode on it. Children dipped their toes in it. Puff thought it was the most wonderful thing in the whole world.

        "I wish I could be a river," Puff sighed.

        "Then you must be brave," said the wise old Wind. "Rivers start as rain."

        So that night, Puff took a deep breath and did something he had never done before. He let go. Pitter-patter, pitter-patter, he fell as tiny raindrops onto the hills. He trickled between the stones, giggled down a little stream, and slid, splash, right into the river!

        Puff sang with the river all the way to the sea. And when the sun came out and warmed the water, Puff floated up, up, up into the sky, and became a little cloud again.

        "Did you like being a river?" asked the Wind.

        "I loved it," yawned Puff. "Tomorrow, can I be the sea?"

        And the Wind smiled and whispered, "Goodnight, little cloud." 🌙
        """,
    ),
    P(
        "en",
        "Write a Shakespearean sonnet about Gutenberg's printing press.",
        "Shakespearean sonnet (ABAB CDCD EFEF GG, iambic pentameter)",
        "celebratory with a humble close",
        [
            "the goldsmith and his trays of type",
            "the wine press repurposed",
            "pamphlets like sparrows",
            "letters still marching across our day",
        ],
        [
            "quatrain 1: casting and setting type",
            "quatrain 2: the press and multiplication",
            "quatrain 3: printed words loose in the world",
            "couplet: he died poor, the letters remain",
        ],
        """
        **The Press**

        In Mainz a goldsmith bent above his trays
        And poured the molten letters, one by one;
        He set them backwards in their mirrored ways,
        Then pressed the page until the work was done.
        The screw came down as once it pressed the wine,
        And lifted up a sheet of sudden black;
        A hundred Bibles grew from one design,
        And knowledge, once let out, would not go back.
        The pamphlets flew like sparrows through the towns,
        They argued in the markets, sang in halls;
        They startled bishops, emperors and crowns,
        And slipped like daylight under cloister walls.
        He died with little; but his letters stay,
        Still marching, small and black, across our day.
        """,
        "Printing press",
    ),
    P(
        "en",
        "Write a diary entry from a merchant arriving in Samarkand on the Silk Road. Around 200 words, first person.",
        "diary entry, first person, about 200 words",
        "observant, weary, quietly hopeful",
        [
            "the smell of the city before the sight of it",
            "camels walking faster",
            "the ritual of haggling",
            "paper, the finest in the world",
        ],
        [
            "arrival at dusk, senses first",
            "a companion's joke",
            "business tomorrow: the haggling ritual",
            "evening in the caravanserai, many languages",
            "father's journeys; plan to buy paper",
        ],
        """
        *Third day of the month of harvest*

        We reached Samarkand at dusk, after nineteen days of dust. I smelled the city before I saw it: woodsmoke, roasting mutton, and something sweet I could not name until a boy ran up to the caravan selling dried apricots.

        The camels knew before we did. They lifted their heads and walked faster, and old Farrukh laughed and said they remember the water here better than he remembers his wife.

        I have sold nothing yet. Tomorrow I will take the silk to the covered market and let the Sogdian traders pretend they are not interested. They always pretend. I always wait. By noon one of them will touch the cloth twice, and then we will begin.

        Tonight I sit in the courtyard of the caravanserai, writing by a lamp that burns oil from a country I have never seen. Around me men are speaking six languages, and somehow everyone is understood.

        My father made this journey eleven times. I begin to see why he never stopped.

        If the prices are good, I will buy paper here. They say it is the finest in the world.
        """,
        "Silk Road",
    ),
    P(
        "fr",
        "Écris un court poème en vers libres sur la Loire au petit matin.",
        "vers libres, quatre strophes",
        "contemplatif, lumineux",
        [
            "sandbanks stretching like arms",
            "a heron pretending to be a branch",
            "fog over slate roofs",
            "the 'last wild river'",
        ],
        [
            "the river wakes before us",
            "heron and fog",
            "the wild-river idea, personified",
            "close on the castles reflected in her",
        ],
        """
        **Loire, six heures**

        La Loire se réveille avant nous.
        Elle étire ses bancs de sable
        comme on étire les bras,
        sans bruit, sans hâte.

        Un héron fait semblant d'être une branche.
        Le brouillard hésite sur l'eau,
        puis se décide à partir
        vers les toits d'ardoise d'Amboise.

        On dit que c'est le dernier fleuve sauvage.
        Ce matin, je le crois :
        personne ne lui a appris
        à se tenir droite.

        Elle passe, elle passe,
        et garde pour elle
        le secret de tous les châteaux
        qui se sont regardés dans ses yeux.
        """,
        "Loire",
    ),
    P(
        "fr",
        "Écris le début d'une nouvelle qui se passe dans une boulangerie à quatre heures du matin (environ 150 mots).",
        "début de nouvelle, environ 150 mots",
        "chaleureux, un peu étrange",
        [
            "the street belongs to the baker at 4 a.m.",
            "the squeaky shutter as an alarm clock",
            "taking the dough's pulse",
            "a boy in pyjamas with a talking cat",
        ],
        [
            "routine and atmosphere",
            "craft details (hands that count)",
            "disruption at 4:20",
            "end on a strange line of dialogue",
        ],
        """
        À quatre heures du matin, la rue des Tanneurs appartient à Madame Roussel.

        Les réverbères bourdonnent encore quand elle tourne la clé de la boulangerie, et le rideau de fer se lève avec ce grincement qu'elle n'a jamais voulu faire réparer : c'est son réveil à elle, et celui du quartier. Dans le fournil, la pâte a travaillé toute la nuit. Elle la touche du bout des doigts, comme on prend le pouls d'un malade, et sourit.

        Elle façonne les baguettes une à une, sans compter. Ses mains comptent pour elle.

        C'est à quatre heures vingt qu'elle entend frapper à la vitrine. Personne ne frappe jamais à quatre heures vingt.

        Derrière la vitre, un petit garçon en pyjama tient un chat dans ses bras. Il a l'air très sérieux.

        — Madame, dit-il, il faut que vous m'aidiez. Le chat a parlé.
        """,
        "Baguette",
    ),
    P(
        "fr",
        "Écris une lettre d'une grand-mère à son petit-fils qui vient de partir étudier à l'étranger. Ton tendre, un peu d'humour.",
        "lettre",
        "tendre, drôle, un peu bourru",
        [
            "the too-quiet house",
            "a second knitted scarf",
            "pasta every night as a confession of weakness",
            "call your mother on Sundays",
        ],
        [
            "missing him, with a joke",
            "practical worries (cold, food)",
            "real advice: talk to people, mistakes are proof of trying",
            "sign-off with availability at 6 a.m.",
        ],
        """
        Mon cher Théo,

        La maison est bien calme depuis ton départ. Trop calme. J'ai même fini par allumer la radio pour entendre quelqu'un laisser traîner ses chaussettes dans l'entrée.

        J'espère que ta chambre à Montréal est chauffée. On m'a dit qu'il faisait moins vingt là-bas en hiver ; je t'ai donc tricoté une deuxième écharpe. Ne proteste pas, elle est déjà dans le colis.

        Mange correctement, s'il te plaît. Des pâtes tous les soirs, ce n'est pas un régime, c'est un aveu de faiblesse. Je t'ai glissé ma recette de soupe au potiron, écrite en gros pour que tu n'aies pas d'excuse.

        Surtout, profite. Parle aux gens, même quand tu as peur de faire des fautes. Les fautes, c'est la preuve qu'on essaie.

        Appelle ta mère le dimanche. Et moi, quand tu veux : je suis toujours réveillée à six heures, tu le sais bien.

        Je t'embrasse très fort,

        Mamie 💛
        """,
    ),
    P(
        "de",
        "Schreib ein kurzes Gedicht über den Herbst im Schwarzwald.",
        "gereimtes Gedicht, drei Strophen, Kreuzreim",
        "stimmungsvoll, ruhig",
        [
            "fog in dark firs",
            "the cuckoo clock in the farmhouse",
            "smell of wood and apples",
            "first snow waiting",
        ],
        [
            "stanza 1: landscape and the last hikers",
            "stanza 2: inside the farmhouse, cuckoo clock",
            "stanza 3: winter approaching, autumn still holding on",
            "keep ABAB rhymes and a steady four-beat line",
        ],
        """
        **Herbst im Schwarzwald**

        Der Nebel hängt in dunklen Tannen,
        das Tal liegt still und nass und grau,
        die letzten Wanderer ziehn von dannen,
        am Feldberg wird der Himmel blau.

        Im Hof, da tickt die alte Uhr,
        der Kuckuck ruft zur vollen Stunde,
        es riecht nach Holz und Apfel nur,
        und Rauch macht langsam seine Runde.

        Bald fällt der erste Schnee ins Land,
        dann schweigen Weg und Bach und Steg,
        doch jetzt noch hält der Herbst die Hand
        und zeigt uns golden jeden Weg.
        """,
        "Schwarzwald",
    ),
    P(
        "de",
        "Schreib eine kurze Geschichte (ca. 150 Wörter) über eine Zugbegleiterin im Nachtzug.",
        "Kurzgeschichte, etwa 150 Wörter",
        "warm, lakonisch",
        [
            "departure at 23:40",
            "the curve behind Hannover where glasses clink",
            "a girl travelling alone to Vienna",
            "cocoa and a second blanket",
        ],
        [
            "the conductor's experience in a few precise details",
            "the girl in compartment 7",
            "a small kindness against the rules",
            "a closing line that turns it back on the conductor",
        ],
        """
        Um 23:40 Uhr fährt der Nachtzug aus Hamburg ab, und um 23:41 Uhr weiß Ulla bereits, wer heute Nacht ihre Hilfe brauchen wird.

        Seit neunzehn Jahren arbeitet sie auf dieser Strecke. Sie kennt die Kurve hinter Hannover, in der die Gläser klirren, und den Bahnhof, an dem niemand je aussteigt. Sie kennt die Reisenden, die nicht schlafen können, und die, die es nicht wollen.

        Heute ist es ein kleines Mädchen in Abteil 7. Es sitzt allein am Fenster, einen Rucksack auf dem Schoß, und zählt die vorbeiziehenden Lichter.

        „Wo willst du denn hin?“, fragt Ulla.

        „Zu meiner Oma nach Wien. Ich bin zum ersten Mal allein unterwegs.“

        Ulla nickt, holt eine zweite Decke und einen Becher Kakao aus ihrem Wagen. Dann setzt sie sich kurz dazu, obwohl das eigentlich nicht erlaubt ist.

        „Weißt du was“, sagt sie, „ich auch. Jede Nacht.“
        """,
    ),
    P(
        "de",
        "Schreib zwei Elfchen zum Thema Kaffee. ☕",
        "two Elfchen (1-2-3-4-1 words, eleven words each)",
        "knapp, alltäglich",
        ["steam from the cup", "the world waking up", "a bitter, warm pause between meetings"],
        [
            "Elfchen 1: morning coffee",
            "Elfchen 2: afternoon coffee",
            "count the words line by line: 1, 2, 3, 4, 1",
        ],
        """
        **Morgens**
        Kaffee
        dampft leise
        in meiner Tasse
        die Welt wird langsam
        wach

        **Nachmittags**
        Bitter
        und warm
        ein kurzer Halt
        zwischen zwei langen Terminen
        Pause
        """,
    ),
    P(
        "es",
        "Escribe un poema breve sobre el mar en Cádiz al atardecer.",
        "verso libre, cuatro estrofas",
        "luminoso, nostálgico",
        [
            "the sea coming home to La Caleta",
            "boats sleeping on their sides",
            "the sun broken into a thousand coins",
            "a copla from a balcony",
        ],
        [
            "the sea in no hurry",
            "boats and a child's stone",
            "smells and an unrequested song",
            "close: the light leaves, the sea stays",
        ],
        """
        **Cádiz, a las nueve**

        El mar de Cádiz no tiene prisa.
        Se acerca a la Caleta
        como quien vuelve a casa
        después de un largo viaje.

        Las barcas duermen de lado,
        cansadas de tanto azul.
        Un niño lanza una piedra
        y el agua le devuelve el sol
        partido en mil monedas.

        Huele a sal, a fritura, a verano.
        Alguien canta desde un balcón
        una copla que nadie ha pedido
        y que todos escuchan.

        Y cuando la luz se va,
        el mar se queda,
        como se quedan siempre
        las cosas que de verdad importan.
        """,
    ),
    P(
        "es",
        "Escribe un microrrelato (menos de 120 palabras) sobre un reloj que siempre va cinco minutos atrasado.",
        "microrrelato, menos de 120 palabras",
        "íntimo, melancólico",
        [
            "grandfather's five minutes",
            "waiting in front of the clock every night",
            "the cough in the corridor",
            "'todavía no'",
        ],
        [
            "the rule: the five minutes were his",
            "after his death, the narrator keeps the clock",
            "nightly ritual",
            "ghostly hint at the end, kept ambiguous",
        ],
        """
        El reloj del abuelo siempre iba cinco minutos atrasado. Nadie lo arreglaba, porque el abuelo decía que esos cinco minutos eran suyos.

        Cuando murió, mi madre quiso llevarlo a un relojero. Yo le pedí que esperara.

        Desde entonces, cada noche, cuando el reloj de la cocina marca las diez, me siento frente al suyo y espero. Son cinco minutos de nada: la casa en silencio, la lámpara encendida, el tictac.

        Pero a veces, justo antes de que sus agujas alcancen la hora, juraría que oigo su tos en el pasillo, y el crujido de su sillón, y su voz diciendo: «Todavía no, todavía no».
        """,
    ),
    P(
        "es",
        "Escribe una carta breve de ánimo para una amiga que va a empezar el Camino de Santiago.",
        "carta",
        "cariñoso, con humor",
        [
            "envy and worry about her feet",
            "blisters and café con leche",
            "rain in Galicia",
            "sitting in the Plaza del Obradoiro",
        ],
        [
            "greeting with a joke",
            "unsolicited practical advice",
            "what the Camino will be like",
            "the arrival, and a send-off",
        ],
        """
        Querida Marta:

        Mañana empiezas el Camino y yo me quedo aquí, muerta de envidia y un poco preocupada por tus pies.

        Antes de que te vayas, algunos consejos que nadie me ha pedido: usa bien las botas antes de salir, lleva tiritas para las ampollas y no intentes llegar la primera a ningún albergue. El Camino no es una carrera. Es más bien una conversación larga contigo misma, con pausas para el café con leche.

        Habrá días de lluvia en Galicia y cuestas que te parecerán injustas. Habrá también amaneceres que no olvidarás nunca y desconocidos que, en tres días, serán amigos.

        Cuando veas la primera concha de vieira en un mojón, acuérdate de mí. Y cuando llegues a la plaza del Obradoiro, siéntate en el suelo, mira la catedral y no hagas nada durante un buen rato. Te lo habrás ganado.

        ¡Buen Camino!

        Un abrazo enorme,
        Lucía
        """,
        "Camino de Santiago",
    ),
    P(
        "it",
        "Scrivi una breve poesia sul caffè del mattino.",
        "verso libero, quattro strofe",
        "affettuoso, quotidiano",
        [
            "the moka gurgling like an old aunt",
            "the dark kitchen",
            "the smell climbing the stairs",
            "first sip by the window",
        ],
        ["the moka as a character", "the undecided day", "the smell as a messenger", "the world can begin"],
        """
        **Moka**

        La moka borbotta sul fuoco
        come una vecchia zia
        che racconta sempre la stessa storia
        e ogni volta la racconta bene.

        La cucina è ancora buia,
        il giorno non ha deciso
        che faccia fare.

        Poi il profumo sale,
        riempie le scale,
        bussa alle porte chiuse.

        Un sorso, in piedi, vicino alla finestra:
        ed ecco, adesso sì,
        il mondo può cominciare.
        """,
    ),
    P(
        "it",
        "Scrivi un breve racconto (circa 150 parole) su una nonna che insegna alla nipote a fare la pasta fresca.",
        "racconto breve, circa 150 parole",
        "tenero, concreto",
        [
            "a mountain of flour",
            "the volcano and one egg per hundred grams",
            "smooth as a baby's skin",
            "crooked, beautiful tagliatelle",
        ],
        [
            "Sunday ritual",
            "the technique, passed down the generations",
            "the grandmother's patience",
            "flash-forward: years later, alone, still crooked",
        ],
        """
        La domenica mattina, la cucina della nonna Teresa diventava una piccola montagna di farina.

        «Fai un vulcano», diceva, e Chiara scavava il buco al centro con le dita, attenta a non far crollare i bordi. Poi arrivavano le uova, una per ogni etto di farina, «come faceva mia madre, e sua madre prima di lei».

        Chiara aveva otto anni e impastava con tutta la forza che aveva. La nonna la guardava senza intervenire, anche quando l'uovo scappava giù dal tavolo.

        «Si sente con le mani quando è pronta», le disse. «Deve diventare liscia come la pelle di un bambino.»

        Stesero la sfoglia insieme con il mattarello lungo, quello che nessun altro poteva toccare, e tagliarono le tagliatelle a occhio, storte e bellissime.

        Anni dopo, Chiara le avrebbe fatte in una cucina lontana, da sola. E le sarebbero venute storte anche lì, esattamente come dovevano.
        """,
    ),
    P(
        "pl",
        "Napisz krótki wiersz o zimie nad Wisłą.",
        "wiersz wolny, cztery strofy",
        "spokojny, obrazowy",
        [
            "the river slowing down",
            "crows arguing over crumbs",
            "ice creaking like an old door",
            "a tram like a lemon slice in tea",
        ],
        [
            "the river asked for silence",
            "small sounds on the bank",
            "the city and the tram",
            "the river remembers summer better than we do",
        ],
        """
        **Zima nad Wisłą**

        Wisła zwolniła,
        jakby ktoś ją poprosił
        o chwilę ciszy.

        Na brzegu wrony
        spierają się o okruchy,
        a lód przy moście
        trzeszczy jak stare drzwi.

        Warszawa dmucha w dłonie.
        Tramwaj przejeżdża po moście,
        ciepły i żółty
        jak plasterek cytryny w herbacie.

        A rzeka płynie dalej,
        pod cienką szybą lodu,
        i pamięta lato
        lepiej niż my.
        """,
        "Wisła",
    ),
    P(
        "pl",
        "Napisz krótkie opowiadanie o kocie, który codziennie jeździ tramwajem.",
        "krótkie opowiadanie",
        "ciepły humor",
        [
            "tram 18 at 7:42",
            "a ginger cat with a torn ear",
            "sausage in paper from the driver",
            "the day the cat didn't come",
        ],
        [
            "the routine",
            "how the driver and passengers adapt",
            "absence and the tram waiting a minute longer",
            "return with a new scratch",
        ],
        """
        Kot wsiadał do tramwaju numer 18 zawsze na tym samym przystanku, dokładnie o 7:42.

        Nikt nie wiedział, skąd się wziął. Był rudy, trochę za gruby i miał naderwane ucho. Siadał na tym samym miejscu przy oknie i patrzył na miasto z miną urzędnika, który sprawdza, czy wszystko jest na swoim miejscu.

        Motorniczy, pan Zdzisław, początkowo próbował go wyprosić. Potem zaczął przywozić mu kawałek kiełbasy w papierku.

        Pasażerowie też się przyzwyczaili. Studentka trzeciego roku prawa ustępowała mu miejsca. Starsza pani z koszykiem zawsze mówiła mu „dzień dobry”.

        Pewnego dnia kot nie przyszedł. Tramwaj stał na przystanku o minutę dłużej niż zwykle i nikt nie narzekał.

        Następnego ranka siedział na swoim miejscu jak gdyby nigdy nic, z nowym zadrapaniem na nosie. Cały wagon odetchnął z ulgą, a pan Zdzisław ruszył z uśmiechem.
        """,
    ),
    P(
        "pt",
        "Escreve um pequeno poema sobre a saudade e o rio Tejo.",
        "verso livre, três estrofes",
        "melancólico, fadista",
        [
            "the Tagus carrying everything to the sea",
            "a name whispered in Alfama",
            "saudade said to be untranslatable",
            "the old tower on the bank",
        ],
        [
            "the river takes and doesn't return",
            "define saudade as a river toward whoever left",
            "the speaker as the tower, singing softly",
        ],
        """
        **Tejo**

        O Tejo leva tudo para o mar
        e não devolve nada.
        Leva os barcos, leva a luz,
        leva o nome que eu disse baixinho
        numa noite de Alfama.

        Dizem que saudade
        não se traduz.
        Eu acho que se traduz, sim:
        é um rio largo
        que corre sempre na direção
        de quem partiu.

        E eu fico na margem,
        como a velha torre,
        a ver chegar o que não chega,
        a cantar baixinho
        o que o rio não diz.
        """,
        "Fado",
    ),
    P(
        "nl",
        "Schrijf een kort verhaal over fietsen in de regen.",
        "kort verhaal",
        "droog, licht ironisch, warm",
        [
            "the forgotten rain suit",
            "water running from the handlebars",
            "a stranger at the traffic light",
            "smiling all morning without knowing why",
        ],
        [
            "set-up: soaked on the way to work",
            "shared misery at the traffic light, ironic exchange",
            "riding side by side in silence",
            "a small lasting warmth",
        ],
        """
        Het regende al sinds zeven uur, en Sanne had natuurlijk haar regenpak thuis laten liggen.

        Ze fietste langs de gracht met haar capuchon diep over haar ogen en haar tas onder haar jas, zodat haar laptop tenminste droog bleef. Het water liep in kleine beekjes van haar stuur naar haar knieën.

        Bij het stoplicht stond een man naast haar, al net zo doorweekt. Hij keek naar de lucht, toen naar haar, en begon te lachen.

        'Lekker weertje, hè?' zei hij.

        'Prachtig,' zei Sanne. 'Ik had er speciaal om gevraagd.'

        Het licht sprong op groen. Ze fietsten een stukje naast elkaar, zonder iets te zeggen, alleen het geluid van de banden op de natte stenen.

        Bij de brug sloeg hij linksaf en stak zijn hand op. Sanne stak de hare ook op.

        Ze kwam drijfnat op haar werk aan. Maar de hele ochtend moest ze af en toe glimlachen, zonder precies te weten waarom.
        """,
    ),
    P(
        "ja",
        "秋の夕暮れをテーマに、俳句を三つ作ってください。",
        "three haiku (5-7-5 morae) with a short note",
        "静か, 季節感",
        [
            "Fuji's long shadow over harvested rice fields",
            "insect voices increasing at dusk",
            "a single persimmon left on the branch",
        ],
        [
            "one seasonal word (kigo) per haiku: 刈田, 虫の音, 柿",
            "count morae: 5-7-5",
            "add a one-sentence explanation",
        ],
        """
        一、
        夕焼けや
        刈田に長き
        富士の影

        二、
        ひとり聞く
        虫の音ふえて
        日暮れけり

        三、
        柿ひとつ
        残して暮るる
        里の空

        それぞれ「刈田」「虫の音」「柿」という秋の季語を使い、夕暮れの静けさと、季節が少しずつ深まっていく感じを表しました。
        """,
        "富士山",
    ),
    P(
        "zh",
        "写一首关于中秋月亮的现代小诗。",
        "modern free verse, three stanzas",
        "温柔, 思念",
        [
            "the moon as a punctual guest on the rooftop",
            "a mooncake piece left for someone far away",
            "two people looking at the same moon",
        ],
        [
            "the moon arrives early and shy",
            "the family table and the untouched piece",
            "closing: someone far away is looking too",
        ],
        """
        **中秋**

        月亮今晚
        来得很早，
        像一位守时的客人，
        站在楼顶，
        不敢敲门。

        妈妈把月饼切成八块，
        说：一块给远方的人。
        那一块就放在桌角，
        整晚
        都没有人动。

        我抬头看月亮，
        月亮也看着我。
        我想，
        在很远很远的地方，
        一定也有人
        正这样看着它。
        """,
    ),
]


# --------------------------------------------------------------------------------------------------
# Row builders
# --------------------------------------------------------------------------------------------------

LETTERS = "ABCD"
REASON_NATIVE = ("fr", "de", "es")  # languages with native reasoning phrasing for some exercises


def make_row(
    lang, exercise, query, reasoning, answer, seed: Topic | None, extra_url=None, constraints=None
) -> dict:
    return {
        "language": lang,
        "exercise": exercise,
        "model": MODEL,
        "query": query,
        "query_seed_url": seed.url if seed else None,
        "query_seed_text": seed.text if seed else None,
        "additional_seed_url": extra_url,
        "seed_license": LICENSE,
        "constraints": constraints,
        "script": SCRIPTS[exercise],
        "synthetic_reasoning": reasoning,
        "synthetic_answer": answer,
    }


def reasoning_lang(rng: Random, lang: str, table: dict, key: str) -> str:
    if lang in table and key in table[lang] and rng.random() < 0.6:
        return lang
    return "en"


def lang_note(rng: Random, lang: str) -> list[str]:
    return [pick(rng, RX["en"]["lang"]).format(lname=LANG_NAMES[lang])] if lang != "en" else []


# Sentence openers that lean on an earlier sentence (pronouns, implicit subjects); such sentences are
# avoided when passage sentences are reused out of order.
DEPENDENT = {
    "He",
    "She",
    "It",
    "They",
    "His",
    "Her",
    "Its",
    "Their",
    "This",
    "These",
    "That",
    "Those",
    "Il",
    "Elle",
    "Ils",
    "Elles",
    "Ses",
    "Son",
    "Sa",
    "Ce",
    "Cette",
    "Ces",
    "Leur",
    "Leurs",
    "Er",
    "Sie",
    "Es",
    "Sein",
    "Seine",
    "Seinen",
    "Ihr",
    "Ihre",
    "Dieses",
    "Diese",
    "Dieser",
    "Darin",
    "Daraus",
    "Su",
    "Sus",
    "Lo",
    "Nace",
    "Cuenta",
    "Murió",
    "Está",
    "Junto",
}


def standalone(sentence: str) -> bool:
    return sentence.split(" ", 1)[0].strip(",") not in DEPENDENT


def context(rng: Random, topic: Topic, ev_i: int, k: int = 2) -> list[str]:
    near = sorted(
        (i for i in range(len(topic.sents)) if i != ev_i),
        key=lambda i: (not standalone(topic.sents[i]), abs(i - ev_i), i),
    )
    head = near[:4]
    rng.shuffle(head)
    return [topic.sents[i] for i in (head + near[4:])[:k]]


def fact_fields(rng: Random, topic: Topic, fact: Fact) -> dict:
    ev_i = topic.ev(fact)
    ctx = context(rng, topic, ev_i, 2)
    q = fact.q
    return {
        "q": q,
        "ql": q[0].lower() + q[1:],
        "name": name_of(topic),
        "title": topic.title,
        "a": fact.a,
        "A": cap(fact.a.rstrip(".")),
        "ev": topic.sents[ev_i],
        "ev_i": ev_i,
        "ctx": ctx[0],
        "ctx2": ctx[1],
        "w0": fact.wrong[0],
        "w1": fact.wrong[1],
        "w2": fact.wrong[2],
        "note": fact.note or "",
        "lname": LANG_NAMES[topic.lang],
    }


def build_memorization(rng: Random, topic: Topic, fact: Fact) -> dict:
    lang = topic.lang
    f = fact_fields(rng, topic, fact)
    sp = "" if lang in CJK else " "
    query = pick(rng, LX[lang]["mem_q"]).format(**f)
    answer = pick(rng, LX[lang]["mem_a"]).format(**f)
    if f["ctx2"] not in answer and rng.random() < 0.5:
        answer += sp + f["ctx2"]
    if fact.note and rng.random() < 0.5:
        answer += "\n\n" + fact.note

    rlang = reasoning_lang(rng, lang, RX, "open")
    R = RX[rlang]
    f["title"] = disp(topic, rlang)
    parts = [pick(rng, R["open"]).format(**f)]
    if rlang == "en":
        parts += lang_note(rng, lang)
    if rng.random() < 0.7:
        parts.append(pick(rng, R["scope"]).format(**f))
    others = [s for i, s in enumerate(topic.sents) if i != f["ev_i"]]
    chosen = sorted(rng.sample(range(len(others)), rng.randint(3, min(6, len(others)))))
    parts.append(pick(rng, R["recall"]).format(**f) + "\n" + bullets(others[i] for i in chosen))
    if rlang == "en" and rng.random() < 0.4:
        parts.append(
            pick(
                rng,
                [
                    "Hmm, none of that is quite the point yet. The question is narrower than that.",
                    "That's background. Now the specific thing being asked.",
                    "OK, but which of these actually answers the question? None directly. The relevant fact is a different one.",
                ],
            )
        )
    parts.append(pick(rng, R["core"]).format(**f))
    if rng.random() < 0.7:
        parts.append(pick(rng, R["verify"]).format(**f))
    parts.append(pick(rng, R["check_note"] if fact.note else R["check"]).format(**f))
    if rlang == "en" and rng.random() < 0.4:
        reasons = rng.sample(MCQ_WRONG, 3)
        parts.append(
            "Alternatives someone might suggest, and why they fail:\n"
            + bullets(f"{w}: {reasons[i].format(**f)}" for i, w in enumerate(fact.wrong))
        )
    if rng.random() < 0.6:
        parts.append(pick(rng, R["extra"]).format(**f))
    if rlang == "en" and rng.random() < 0.2:
        rest = [s for i, s in enumerate(others) if i not in chosen]
        if rest:
            parts.append(
                "Other background I could use but probably shouldn't, to stay on point:\n" + bullets(rest)
            )
    parts.append(pick(rng, R["conf"]).format(**f))
    if rlang == "en" and rng.random() < 0.4:
        draft = answer.split("\n\n")[0]
        parts.append(f"Draft opening:\n> {draft}\n\nReads fine. Keep the rest short.")
    parts.append(pick(rng, R["plan"]).format(**f))
    return make_row(lang, "memorization", query, "\n\n".join(parts), answer, topic)


def build_rag(rng: Random, topic: Topic, fact: Fact) -> dict:
    lang = topic.lang
    f = fact_fields(rng, topic, fact)
    other = pick(rng, [t for t in TOPICS[lang] if t is not topic])
    k = rng.choice([1, 2])
    j = 3 - k
    other_sents = other.sents[: rng.randint(4, 6)]
    srcs = {k: topic.text, j: join_sents(other_sents, lang)}
    sources = "\n\n".join(f"<source_{i}>\n{srcs[i]}\n</source_{i}>" for i in (1, 2))
    f.update(k=k, j=j, other=disp(other, lang) if lang == "en" else other.title, sources=sources)
    query = pick(rng, LX[lang]["rag_q"]).format(**f)
    answer = pick(rng, LX[lang]["rag_a"]).format(**f)
    if rng.random() < 0.4:
        sp = "" if lang in CJK else " "
        answer = answer.replace(f"[{k}]\n\n", f"[{k}]{sp}{f['ctx2']}{sp}[{k}]\n\n", 1)

    rlang = reasoning_lang(rng, lang, RX, "rag_open")
    R = RX[rlang]
    f.update(title=disp(topic, rlang), other=disp(other, rlang))
    parts = [pick(rng, R["rag_open"]).format(**f)]
    if rlang == "en":
        parts += lang_note(rng, lang)
    summ = {k: rng.sample(topic.sents, 3), j: other_sents[:2]}
    titles = {k: f["title"], j: f["other"]}
    parts.append(
        pick(rng, R["rag_skim"])
        + "\n\n"
        + "\n\n".join(f"[{i}] {titles[i]}\n" + bullets(trim(s, 110) for s in summ[i]) for i in (1, 2))
    )
    parts += [pick(rng, R[key]).format(**f) for key in ("rag_scan", "rag_quote")]
    if rlang == "en" and rng.random() < 0.4:
        parts.append(
            f"Let me re-read source {k} in full to make sure nothing elsewhere in it qualifies that line:\n"
            + bullets(topic.sents)
            + "\n\nNo contradiction. The line above stands."
        )
    parts += [pick(rng, R[key]).format(**f) for key in ("rag_extra", "rag_check")]
    if rlang == "en" and rng.random() < 0.5:
        parts.append("Draft:\n> " + answer.split("\n\n")[0] + "\n\nGood: every claim carries a citation.")
    parts.append(pick(rng, R["rag_plan"]).format(**f))
    return make_row(lang, "rag", query, "\n\n".join(parts), answer, topic, extra_url=other.url)


MCQ_WRONG = [
    "doesn't fit what I know about {title}.",
    "plausible-sounding, but it belongs to a different context.",
    "no, I can rule this out.",
    "a tempting distractor, but it contradicts the fact above.",
    "unlikely; nothing connects this to {title}.",
    "this is the kind of answer that sounds right if you half-remember. It isn't.",
    "I can't reconcile this with the established facts, so it's out.",
]


def build_mcq(rng: Random, topic: Topic, fact: Fact) -> dict:
    lang = topic.lang
    f = fact_fields(rng, topic, fact)
    options = [fact.a, *fact.wrong]
    rng.shuffle(options)
    letter = LETTERS[options.index(fact.a)]
    sep = pick(rng, [") ", ". "])
    query = pick(rng, LX[lang]["mcq_q"]).format(
        q=fact.q, opts="\n".join(f"{LETTERS[i]}{sep}{cap(o)}" for i, o in enumerate(options))
    )
    extra = fact.note or f["ctx"]
    f["title"] = disp(topic, "en")
    joiner = "" if lang in CJK else " "
    answer = pick(rng, LX[lang]["mcq_a"]).format(L=letter, opt=cap(fact.a), ev=f["ev"], extra=joiner + extra)

    parts = [
        pick(
            rng,
            [
                "Multiple choice, four options. Question: {q}",
                "MCQ about {title}. Let me go through the options one by one rather than jumping at the first plausible one.",
                'Four options; exactly one should be correct. The question: "{q}"',
            ],
        ).format(**f)
    ]
    parts += lang_note(rng, lang)
    others = [s for i, s in enumerate(topic.sents) if i != f["ev_i"]]
    parts.append(
        "What I know about {title}:\n".format(**f)
        + bullets(sorted([*rng.sample(others, min(3, len(others))), f["ev"]], key=topic.sents.index))
    )
    if rng.random() < 0.5:
        parts.append(
            f"First instinct says {letter}, but distractors are designed to look right, so let me check every option instead of trusting the instinct."
        )
    wrong_reasons = rng.sample(MCQ_WRONG, 3)
    lines = []
    for i, opt in enumerate(options):
        if opt == fact.a:
            lines.append(f'{LETTERS[i]}) {cap(opt)}: matches "{trim(f["ev"], 100)}" ✓')
        else:
            lines.append(f"{LETTERS[i]}) {cap(opt)}: " + wrong_reasons.pop().format(**f))
    parts.append("Option by option:\n" + "\n".join(lines))
    if fact.note:
        parts.append(f"Worth noting why the distractors are tempting: {fact.note}")
    parts.append(
        pick(
            rng,
            [
                "Double-check by re-reading the question: it asks exactly this, not a related fact. So {L}.",
                "One more pass to be safe: {L} is the only option consistent with what I know.",
                "So the answer is {L}. No option is partially right, which makes this clean.",
            ],
        ).format(L=letter)
    )
    if rng.random() < 0.5:
        parts.append("Draft:\n> " + answer.split("\n\n")[0])
    parts.append(
        pick(
            rng,
            [
                "Answer format: the letter, the option text, one or two sentences of justification.",
                "Give the letter first, then a short explanation.",
            ],
        )
    )
    return make_row(lang, "mcq", query, "\n\n".join(parts), answer, topic)


# ---- editing --------------------------------------------------------------------------------------


def corrupt(rng: Random, window: list[str]) -> tuple[list[str], list[bool], list[tuple]]:
    """Inject 3-4 mistakes into distinct sentences. Returns (sentences, no_space_before, edits)."""
    sents = list(window)
    nospace = [False] * len(sents)
    edits: list[tuple] = []
    ops = rng.sample(["swap", "swap", "dup", "lower", "nospace"], rng.choice([3, 4]))
    free = list(range(len(sents)))
    rng.shuffle(free)
    for op in ops:
        for i in list(free):
            toks = sents[i].split(" ")
            if op == "swap":
                cands = [t for t in range(1, len(toks)) if toks[t].isalpha() and len(toks[t]) >= 6]
                if not cands:
                    continue
                t = pick(rng, cands)
                w = toks[t]
                ps = [
                    p
                    for p in range(1, len(w) - 2)
                    if w[p] != w[p + 1] and w[p].islower() and w[p + 1].islower()
                ]
                if not ps:
                    continue
                p = pick(rng, ps)
                bad = w[:p] + w[p + 1] + w[p] + w[p + 2 :]
                toks[t] = bad
                edits.append((i, "swap", {"bad": bad, "good": w}))
            elif op == "dup":
                cands = [
                    t
                    for t in range(len(toks) - 1)
                    if toks[t].isalpha() and toks[t].islower() and 2 <= len(toks[t]) <= 4
                ]
                if not cands:
                    continue
                t = pick(rng, cands)
                toks.insert(t, toks[t])
                edits.append((i, "dup", {"w": toks[t]}))
            elif op == "lower":
                if i == 0 or not toks[0][:1].isupper() or not toks[0].isalpha():
                    continue
                good = toks[0]
                toks[0] = good[0].lower() + good[1:]
                edits.append((i, "lower", {"bad": toks[0], "good": good}))
            elif op == "nospace":
                if i == 0 or not sents[i - 1].endswith("."):
                    continue
                nospace[i] = True
                edits.append((i, "nospace", {"w": toks[0]}))
            sents[i] = " ".join(toks)
            free.remove(i)
            break
    edits.sort(key=lambda e: e[0])
    return sents, nospace, edits


EDIT_EN_DESC = {
    "swap": '"{bad}" should be "{good}" (two letters transposed)',
    "dup": '"{w} {w}": doubled word, delete one',
    "lower": 'starts with a lowercase "{bad}", needs a capital: "{good}"',
    "nospace": 'no space after the full stop before "{w}"',
}


def build_editing(rng: Random, topic: Topic) -> dict:
    lang = topic.lang
    n = rng.choice([4, 5])
    start = rng.randrange(0, len(topic.sents) - n + 1)
    window = topic.sents[start : start + n]
    sents, nospace, edits = corrupt(rng, window)
    text = "".join(("" if i == 0 else ("" if nospace[i] else " ")) + s for i, s in enumerate(sents))
    clean = " ".join(window)
    L = EDIT[lang]
    query = pick(rng, L["q"]).format(text=text)
    changes = bullets(L[op].format(**kw) for _, op, kw in edits)
    answer = pick(rng, L["a"]).format(clean=clean, changes=changes, n=len(edits))

    parts = [
        pick(
            rng,
            [
                "The user wants a proofread: fix errors, keep the wording. So no stylistic rewrite, just corrections.",
                "Proofreading task. Goal: correct spelling, punctuation and capitalisation, and leave everything else alone.",
                "Task: find and fix the mistakes in this paragraph without changing its meaning or style.",
            ],
        )
    ]
    if lang != "en":
        parts.append(
            f"The text is in {LANG_NAMES[lang]}; corrections must follow {LANG_NAMES[lang]} spelling and punctuation conventions."
        )
    kinds = sorted({op for _, op, _ in edits})
    kind_words = {
        "swap": "a typo",
        "dup": "a doubled word",
        "lower": "a capitalisation slip",
        "nospace": "a spacing problem",
    }
    parts.append(
        f"First read-through: the paragraph is about {disp(topic, 'en')} and reads fine overall, but I can already see "
        + ", ".join(kind_words[k] for k in kinds)
        + ". There may be more, so a careful pass is needed."
    )
    walk = []
    by_sent: dict[int, list[str]] = {}
    for i, op, kw in edits:
        by_sent.setdefault(i, []).append(EDIT_EN_DESC[op].format(**kw))
    fine = [
        "Spelling and punctuation OK.",
        "No issues.",
        "Fine; names and numbers look right.",
        "Correct as written.",
    ]
    for i, s in enumerate(sents):
        head = f'S{i + 1}: "{s}"'
        if i in by_sent:
            walk.append(head + "\n" + "\n".join(f"  → {d}" for d in by_sent[i]))
        else:
            walk.append(head + f"\n  → {pick(rng, fine)}")
    parts.append("Going sentence by sentence:\n\n" + "\n".join(walk))
    parts.append(
        pick(
            rng,
            [
                "Second pass for anything subtler (agreement, accents, punctuation around numbers). Nothing else jumps out.",
                "Second pass: I considered changing a comma or two, but those are matters of style, and the user asked me not to rewrite.",
                "Second pass. The content itself isn't my job here; I'll leave it even where I'd phrase it differently.",
            ],
        )
    )
    parts.append(
        f"Total: {len(edits)} corrections. Assembling the corrected paragraph and re-reading it once:\n\n> {clean}"
    )
    parts.append(
        pick(
            rng,
            [
                "Output: the corrected text, then a short list of the changes so they're easy to review.",
                "I'll return the clean paragraph followed by a bulleted change log.",
            ],
        )
    )
    return make_row(lang, "editing", query, "\n\n".join(parts), answer, topic)


# ---- constrained writing ------------------------------------------------------------------------------


def build_constrained(rng: Random, topic: Topic) -> dict:
    lang = topic.lang
    C = CW[lang]
    fmt = pick(rng, ["bullets", "paragraphs", "prose"])
    pool = [
        m for m in ("max_words", "lowercase", "title", "end_q", "no_commas", "quotes", "keyword") if m in C
    ]
    mods = rng.sample(pool, 2 if fmt == "prose" else rng.choice([1, 2]))
    if "lowercase" in mods and "title" in mods and rng.random() < 0.5:
        mods.remove("lowercase")
    pool_s = [s for s in topic.sents[1:] if standalone(s)]
    if "no_commas" in mods:
        pool_s = [s for s in pool_s if "," not in s]
    lead = topic.sents[0].replace(",", "") if "no_commas" in mods else topic.sents[0]

    def take(n: int) -> list[str]:
        picked = sorted(rng.sample(range(len(pool_s)), min(n - 1, len(pool_s))))
        return [lead] + [pool_s[i] for i in picked]

    if fmt == "bullets":
        chosen = take(rng.choice([3, 4, 5]))
        n = len(chosen)
        body = bullets(chosen)
    elif fmt == "paragraphs":
        chosen = take(2 * rng.choice([2, 3]))
        n = len(chosen) // 2
        chosen = chosen[: 2 * n]
        body = "\n\n***\n\n".join(" ".join(chosen[2 * p : 2 * p + 2]) for p in range(n))
    else:
        n = 0
        chosen = take(4)
        body = " ".join(chosen)
    kw = None
    if "keyword" in mods:
        counts = Counter(
            w.strip(".,;:").lower()
            for w in body.split()
            if len(w.strip(".,;:")) >= 5 and w.strip(".,;:").isalpha()
        )
        common = sorted(w for w, c in counts.items() if c >= 2)
        if common:
            kw = pick(rng, common)
        else:
            mods.remove("keyword")
    title_line = pick(rng, C["titles"]).format(title=topic.title) if "title" in mods else None
    closing = pick(rng, C["closing"]) if "end_q" in mods else None
    pieces = [p for p in (title_line, body, closing) if p]
    text = "\n\n".join(pieces)
    if "lowercase" in mods:
        text = text.lower()
    if "quotes" in mods:
        text = f'"{text}"'
    limit = None
    if "max_words" in mods:
        limit = next(x for x in (50, 60, 80, 100, 120, 150, 200, 250) if x > n_words(text) + 3)

    cons = [C[fmt].format(n=n)] if fmt != "prose" else []
    for m in mods:
        cons.append(C[m].format(n=limit, kw=kw))
    task = pick(rng, C["task"]).format(name=name_of(topic), aud=pick(rng, C["aud"]))
    query = task + " " + " ".join(cons)
    answer = text

    # verification, reported in the reasoning with the real numbers
    checks = []
    if fmt == "bullets":
        nb = sum(1 for line in answer.splitlines() if line.lstrip('"').startswith("- "))
        assert nb == n
        checks.append(f"- bullet points: {nb} ✓")
    if fmt == "paragraphs":
        np_ = answer.count("***") + 1
        assert np_ == n
        checks.append(f"- paragraphs: {np_}, separated by *** ✓")
    if limit:
        assert n_words(answer) < limit
        checks.append(f"- word count: {n_words(answer)} < {limit} ✓")
    if "lowercase" in mods:
        assert answer == answer.lower()
        checks.append("- no capital letters anywhere ✓")
    if title_line:
        checks.append("- title in << >> present ✓")
    if closing:
        assert answer.rstrip('"').rstrip().endswith("?")
        checks.append("- ends with a question ✓")
    if "no_commas" in mods:
        assert "," not in answer
        checks.append("- commas: 0 ✓")
    if "quotes" in mods:
        checks.append("- first and last characters are double quotes ✓")
    if kw:
        c = answer.lower().count(kw)
        assert c >= 2
        checks.append(f'- "{kw}" appears {c} times ✓')

    plan = {
        "bullets": f"Exactly {n} bullets: one fact per bullet, each a full sentence.",
        "paragraphs": f"{n} paragraphs with *** between them; two sentences each should be enough.",
        "prose": "No layout constraint, so plain prose in a single paragraph.",
    }[fmt]
    mod_plan = {
        "max_words": f"Word limit {limit}: aim comfortably below it.",
        "lowercase": "All lowercase, even for names and at the start of sentences. Looks odd, but the instruction is explicit.",
        "title": f"Title in double angular brackets: {title_line}",
        "end_q": f'End with a question to the reader: "{closing}"',
        "no_commas": "No commas at all: pick sentences that don't need them, then check at the end.",
        "quotes": "Whole response wrapped in double quotes, so the very first and last characters are quote marks.",
        "keyword": f'The word "{kw}" at least twice; it comes up naturally in the facts I\'m using.',
    }
    parts = [f"Task: {task}\nConstraints to satisfy:\n" + numbered(cons)]
    parts += lang_note(rng, lang)
    parts.append(
        f"Content first. Facts about {disp(topic, 'en')} worth including:\n"
        + bullets(trim(s, 80) for s in chosen)
    )
    parts.append("Planning each constraint:\n" + bullets([plan] + [mod_plan[m] for m in mods]))
    parts.append("Draft:\n\n" + answer)
    parts.append("Verification:\n" + "\n".join(checks))
    parts.append(
        pick(rng, ["All constraints met; the content stays accurate.", "Everything checks out. Done."])
    )
    return make_row(
        lang, "constrained_writing", query, "\n\n".join(parts), answer, topic, constraints="\n".join(cons)
    )


# ---- creative writing ------------------------------------------------------------------------------


def build_creative(rng: Random, piece: Piece, seed: Topic | None) -> dict:
    lines = [x for x in piece.text.splitlines() if x.strip()]
    body = [x for x in lines if not (x.startswith("*") and x.endswith("*")) and not x.endswith("、")]
    min_len = 4 if piece.lang in CJK else 12
    full = [x for x in body if len(x) >= min_len and not x.endswith(",")] or body
    first = full[0]
    parts = [
        pick(rng, ['Request: "{q}"', "The user wants: {q}", 'Creative task. Prompt: "{q}"']).format(
            q=piece.q
        ),
        f"Form: {piece.form}. Tone: {piece.tone}.",
    ]
    if piece.lang != "en":
        parts.append(
            f"The prompt is in {LANG_NAMES[piece.lang]}, so the piece must be written in {LANG_NAMES[piece.lang]}; I'll plan in English."
        )
    parts.append("Images and anchors to use:\n" + bullets(piece.images))
    parts.append("Structure:\n" + numbered(piece.plan))
    parts.append(
        pick(
            rng,
            [
                f'Drafting the first line: "{first}". That sets the tone quickly; keep it.',
                f'Opening: "{first}". Good, it gets straight into the scene.',
                f'Try an opening... "{first}". Yes, that works better than starting with description.',
            ],
        )
    )
    mid, last = full[len(full) // 2], full[-1]
    parts.append(
        pick(
            rng,
            [
                f'Middle section: the turn comes with "{mid}". It shifts the piece without announcing the shift.',
                f'Around the middle: "{mid}". This is where the piece needs to move, and it does.',
            ],
        )
    )
    parts.append(
        pick(
            rng,
            [
                f'Near the end: "{last}". It closes on something concrete instead of explaining the point.',
                f'Towards the close: "{last}". Quiet enough, and it echoes the opening.',
                f'Ending near "{last}". I tried a more explicit ending in my head; this one trusts the reader more.',
            ],
        )
    )
    alts = [
        "a more explicit ending (rejected: stronger if the reader completes the thought)",
        "a more ornate register (rejected: it would fight the tone)",
        "a different opening image (kept the current one: it is more concrete)",
        "making it longer (no: the prompt asks for something short)",
        "more adjectives in the descriptive lines (no: plain words carry this better)",
    ]
    parts.append("Alternatives considered:\n" + bullets(rng.sample(alts, 2)))
    size = f"{n_words(piece.text)} words" if piece.lang not in CJK else f"{len(piece.text)} characters"
    parts.append(
        f"Check against the request:\n- length: {size}, {len(lines)} non-empty lines\n- form: {piece.form} ✓\n- tone: {piece.tone} ✓"
    )
    parts.append(
        pick(
            rng,
            [
                "Final pass: cut any adjective that doesn't earn its place, and make sure the ending lands quietly rather than explaining itself.",
                "One more read for rhythm. A couple of lines could be tighter, but read aloud they work.",
                "Last check: no clichés I can't justify, concrete details over abstractions, end on an image.",
            ],
        )
    )
    return make_row(piece.lang, "creative_writing", piece.q, "\n\n".join(parts), piece.text, seed)


# ---- math ------------------------------------------------------------------------------------------

THOUSANDS = {"fr": "\u202f", "de": ".", "es": ".", "it": ".", "pl": "\u00a0", "pt": "\u00a0", "nl": "."}
CENT = Decimal("0.01")


def q2(x: Decimal) -> Decimal:
    return x.quantize(CENT, ROUND_HALF_UP)


def fnum(x, lang: str, places: int = 2) -> str:
    s = f"{Decimal(x):,.{places}f}"
    if lang in THOUSANDS:
        s = s.replace(",", "\x00").replace(".", ",").replace("\x00", THOUSANDS[lang])
    return s


def fshort(x, lang: str = "en") -> str:
    """Shortest plain decimal (2.25, 0.8, 12), with a decimal comma where the language uses one."""
    if isinstance(x, Fraction):
        x = Decimal(x.numerator) / Decimal(x.denominator)
    s = format(Decimal(x), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.replace(".", ",") if lang in THOUSANDS else s


def money(x: Decimal, lang: str) -> str:
    s = fnum(x, lang, 2)
    if lang == "en":
        return "$" + s
    if lang == "nl":
        return "€\u00a0" + s
    if lang == "pl":
        return s + "\u00a0zł"
    return s + "\u00a0€"


def dur(minutes: int, lang: str) -> str:
    h, m = divmod(int(minutes), 60)
    if lang == "nl":
        return f"{h} uur" + (f" en {m} minuten" if m else "")
    return f"{h} h" + (f" {m} min" if m else "")


def frac(x: Fraction) -> str:
    return f"{x.numerator}/{x.denominator}" if x.denominator != 1 else str(x.numerator)


def lin(coef: int, const: int) -> str:
    term = "x" if coef == 1 else f"{coef}x"
    if const == 0:
        return term
    return f"{term} {'+' if const > 0 else '-'} {abs(const)}"


def signed(v: int) -> str:
    return f"+ {v}" if v >= 0 else f"- {abs(v)}"


def g_discount(rng: Random) -> dict:
    P = Decimal(rng.randrange(40, 400))
    d, t = rng.choice([20, 25, 30, 40]), rng.choice([5, 7, 8, 10])
    disc = P * d / 100
    sale = P - disc
    tax = sale * t / 100
    return {
        "Pv": P,
        "d": d,
        "t": t,
        "discv": disc,
        "salev": sale,
        "taxv": tax,
        "finalv": q2(sale + tax),
        "wrongv": q2(P * (100 - d + t) / 100),
    }


def f_discount(r: dict, lang: str) -> dict:
    exact_tax = r["taxv"] != q2(r["taxv"])
    return {
        "P": money(r["Pv"], lang),
        "Praw": fshort(r["Pv"]),
        "d": r["d"],
        "t": r["t"],
        "disc": money(q2(r["discv"]), lang),
        "disc_raw": fshort(r["discv"]),
        "sale": money(q2(r["salev"]), lang),
        "sale_raw": fshort(r["salev"]),
        "tax": money(q2(r["taxv"]), lang),
        "tax_raw": fshort(r["taxv"]),
        "final": money(r["finalv"], lang),
        "final_raw": fshort(r["salev"] + r["taxv"]),
        "m1": fshort(1 - Decimal(r["d"]) / 100, lang),
        "m2": fshort(1 + Decimal(r["t"]) / 100, lang),
        "dec_d": fshort(Decimal(r["d"]) / 100, lang),
        "dec_t": fshort(Decimal(r["t"]) / 100, lang),
        "wrongpct": r["d"] - r["t"],
        "wrong": money(r["wrongv"], lang),
        "round_note": f"That's {fshort(r['taxv'])} exactly; I'll round to the cent only at the end.\n"
        if exact_tax
        else "",
    }


def g_speed(rng: Random) -> dict:
    v = rng.choice([60, 72, 80, 84, 88, 92, 96, 100, 104, 120])
    mins = [90, 105, 120, 135, 150, 165, 180, 210, 225, 240]
    tmin = rng.choice(mins)
    t2min = rng.choice([m for m in mins if m != tmin])
    return {"v": v, "tmin": tmin, "t2min": t2min, "D": v * tmin // 60, "D2": v * t2min // 60}


CMP = {
    "en": (("more", "longer"), ("less", "shorter")),
    "fr": (("plus grande",) * 2, ("plus petite",) * 2),
    "es": (("mayor",) * 2, ("menor",) * 2),
}


def f_speed(r: dict, lang: str) -> dict:
    h, m = divmod(r["tmin"], 60)
    cmp = CMP.get(lang, CMP["en"])[0 if r["D2"] > r["D"] else 1]
    return {
        "v": r["v"],
        "D": r["D"],
        "D2": r["D2"],
        "T": dur(r["tmin"], lang),
        "T2": dur(r["t2min"], lang),
        "th": fshort(Decimal(r["tmin"]) / 60, lang),
        "t2h": fshort(Decimal(r["t2min"]) / 60, lang),
        "h": h,
        "m": m,
        "tmin": r["tmin"],
        "t2min": r["t2min"],
        "cmp": cmp[0],
        "cmp2": cmp[1],
    }


def g_equation(rng: Random) -> dict:
    x = rng.choice([v for v in range(-7, 13) if v != 0])
    A = rng.randint(4, 9)
    C = rng.randint(1, A - 2)
    B = rng.choice([v for v in range(-15, 16) if v != 0])
    D = A * x + B - C * x
    return {"x": x, "A": A, "B": B, "C": C, "D": D, "k": A - C, "r": D - B, "val": A * x + B}


def f_equation(r: dict, lang: str) -> dict:
    A, B, C, D, x, k = r["A"], r["B"], r["C"], r["D"], r["x"], r["k"]
    return {
        **r,
        "eq": f"{lin(A, B)} = {lin(C, D)}",
        "step1": f"{lin(k, B)} = {D}",
        "step2": f"{k}x = {r['r']}",
        "lhs": f"{A}·({x}) {signed(B)} = {r['val']}",
        "rhs": f"{C}·({x})" + (f" {signed(D)}" if D else "") + f" = {r['val']}",
        "C": "" if C == 1 else C,
    }


STEP_B = {
    "en": ("Subtract {v} from both sides:", "Add {v} to both sides:"),
    "fr": ("On retire {v} des deux côtés :", "On ajoute {v} des deux côtés :"),
    "de": ("Auf beiden Seiten {v} abziehen:", "Auf beiden Seiten {v} addieren:"),
}


def equation_answer(v: dict, lang: str) -> str:
    intro, divide, check, sol, closing = EQ_WORDS[lang]
    colon = "：" if lang in CJK else (" :" if lang == "fr" else ":")
    C = v["C"]
    b = v["B"] if v["B"] > 0 else f"({v['B']})"
    return (
        f"{intro}\n\n{v['A']}x - {C}x = {v['D']} - {b}\n{v['k']}x = {v['r']}\n\n{divide.format(k=v['k'])}\n\n"
        f"x = {v['r']}/{v['k']} = {v['x']}\n\n**{sol}{colon} x = {v['x']}**\n\n"
        f"{check}{colon} {v['lhs']}; {v['rhs']}. {closing.format(val=v['val'])}"
    )


def g_fence(rng: Random) -> dict:
    L, W = rng.randint(12, 40), rng.randint(8, 25)
    g = rng.choice([Decimal(1), Decimal("1.5"), Decimal(2)])
    c = rng.choice([Decimal(14), Decimal("18.50"), Decimal(22), Decimal("25.75")])
    per = 2 * (L + W)
    return {
        "L": L,
        "W": W,
        "gv": g,
        "cv": c,
        "per": per,
        "fencev": per - g,
        "costv": q2((per - g) * c),
        "area": L * W,
    }


def f_fence(r: dict, lang: str) -> dict:
    return {
        **r,
        "g": fshort(r["gv"], lang),
        "c": money(r["cv"], lang),
        "c_raw": fshort(r["cv"]),
        "fence": fshort(r["fencev"], lang),
        "cost": money(r["costv"], lang),
        "cost_raw": fshort(r["fencev"] * r["cv"]),
    }


def g_average(rng: Random) -> dict:
    T = rng.choice([80, 84, 85, 88, 90])
    while True:
        s = [rng.randint(68, 96) for _ in range(4)]
        need = 5 * T - sum(s)
        if 60 <= need <= 100:
            return {"scores": s, "T": T, "tot": 5 * T, "sum": sum(s), "need": need}


def f_average(r: dict, lang: str) -> dict:
    s = r["scores"]
    conj = {"es": "y"}.get(lang, "and")
    return {**r, "s": f"{s[0]}, {s[1]}, {s[2]} {conj} {s[3]}", "s_plus": " + ".join(map(str, s))}


def g_interest(rng: Random) -> dict:
    return {
        "Pv": Decimal(rng.choice([1000, 2500, 4000, 5000, 8000])),
        "r": rng.choice([2, 3, 4, 5, 6]),
        "n": rng.choice([3, 4, 5, 6]),
    }


def f_interest(r: dict, lang: str) -> dict:
    P, n = r["Pv"], r["n"]
    growth = 1 + Decimal(r["r"]) / 100
    A = P * growth**n
    simple = P * Decimal(r["r"]) / 100 * n
    table = "\n".join(f"| {i} | {money(q2(P * growth**i), lang)} |" for i in range(1, n + 1))
    return {
        "P": money(P, lang),
        "Praw": fshort(P),
        "r": r["r"],
        "rdec": fshort(Decimal(r["r"]) / 100),
        "n": n,
        "growth": fshort(growth),
        "factor": fshort(growth**n),
        "table": table,
        "A": money(q2(A), lang),
        "A_raw": fshort(A.quantize(Decimal("0.0001"))),
        "interest": money(q2(A) - P, lang),
        "simple": money(simple, lang),
        "diff": money(q2(A) - P - simple, lang),
    }


def g_work(rng: Random) -> dict:
    a, b = rng.choice([(3, 6), (4, 12), (2, 3), (4, 6), (6, 10), (10, 15), (5, 20), (6, 12)])
    return {"a": a, "b": b}


def f_work(r: dict, lang: str) -> dict:
    a, b = r["a"], r["b"]
    rate = Fraction(1, a) + Fraction(1, b)
    inv = 1 / rate
    return {
        "a": a,
        "b": b,
        "a_plus_b": a + b,
        "ab": a * b,
        "frac": frac(rate),
        "inv": fshort(inv),
        "hm": dur(inv * 60, lang),
        "fast": min(a, b),
        "part_a": frac(inv / a),
        "part_b": frac(inv / b),
    }


def g_probability(rng: Random) -> dict:
    return {"r": rng.randint(3, 8), "b": rng.randint(2, 7)}


def f_probability(r: dict, lang: str) -> dict:
    red, blue = r["r"], r["b"]
    n = red + blue
    p = Fraction(red * (red - 1), n * (n - 1))
    return {
        "r": red,
        "b": blue,
        "n": n,
        "r1": red - 1,
        "n1": n - 1,
        "num": red * (red - 1),
        "den": n * (n - 1),
        "simp": frac(p),
        "dec": fshort((Decimal(p.numerator) / Decimal(p.denominator)).quantize(Decimal("0.0001"))),
        "comp": frac(1 - p),
        "cr2": red * (red - 1) // 2,
        "cn2": n * (n - 1) // 2,
    }


MATH_KINDS = {
    "discount": (g_discount, f_discount),
    "speed": (g_speed, f_speed),
    "equation": (g_equation, f_equation),
    "fence": (g_fence, f_fence),
    "average": (g_average, f_average),
    "interest": (g_interest, f_interest),
    "work": (g_work, f_work),
    "probability": (g_probability, f_probability),
}
# Values that stay as the query wrote them (currency, durations, names) when the reasoning is in English.
KEEP_QUERY_FORM = (
    "P",
    "disc",
    "sale",
    "tax",
    "final",
    "wrong",
    "c",
    "cost",
    "T",
    "T2",
    "A",
    "interest",
    "simple",
    "diff",
    "table",
    "s",
)


MATH_GIVEN = {
    "discount": (
        ["list price {P}", "discount {d}%", "tax {t}%, charged on the discounted price"],
        "the final price",
    ),
    "speed": (
        ["distance {D} km", "time {T}", "second distance {D2} km"],
        "average speed, then the time for the second distance",
    ),
    "equation": (["{eq}", "one unknown, x"], "the value of x"),
    "fence": (
        ["rectangle {L} m by {W} m", "gate gap {g} m", "fencing at {c} per metre"],
        "fence length, cost and area",
    ),
    "average": (
        ["scores so far: {s}", "target: average {T} over five tests"],
        "the score needed on the fifth test",
    ),
    "interest": (
        ["principal {P}", "{r}% a year, compounded annually", "{n} years"],
        "the final balance, compared with simple interest",
    ),
    "work": (["pipe A alone: {a} h", "pipe B alone: {b} h"], "the time with both pipes open"),
    "probability": (["{r} red and {b} blue marbles", "two draws without replacement"], "P(both red)"),
}
SANITY = {
    "fr": "Ordre de grandeur : le résultat est plausible. Rédaction : les étapes avec leurs valeurs, le résultat en gras.",
    "de": "Größenordnung: Das Ergebnis ist plausibel. Darstellung: Schritte mit Zahlen, Ergebnis fett.",
    "es": "Orden de magnitud: el resultado es razonable. Redacción: los pasos con sus cifras y el resultado en negrita.",
}


def build_math(rng: Random, lang: str, kind: str) -> dict:
    gen, fmt = MATH_KINDS[kind]
    raw = gen(rng)
    vq = fmt(raw, lang)
    vq["name"] = pick(rng, MATH_NAMES[lang]) if lang in MATH_NAMES else ""
    vq["item"] = pick(rng, MATH_ITEMS[lang]) if lang in MATH_ITEMS else ""
    query = pick(rng, MATH_Q[lang][kind]).format(**vq)
    answer = equation_answer(vq, lang) if kind == "equation" else MATH_A[lang][kind].format(**vq)

    rlang = reasoning_lang(rng, lang, MATH_R, kind)
    if rlang == lang:
        vr = dict(vq)
    else:
        vr = {**fmt(raw, "en"), **{k: vq[k] for k in KEEP_QUERY_FORM if k in vq}, "name": vq["name"]}
        vr["item"] = vq["item"] if lang == "en" else f'"{vq["item"]}"'
    if kind == "equation":
        sub, add = STEP_B[rlang]
        vr["step_b"] = (sub if raw["B"] > 0 else add).format(v=abs(raw["B"]))
    reasoning = MATH_R[rlang][kind].format(**vr)
    if rlang == "en":
        given, asked = MATH_GIVEN[kind]
        reasoning = (
            "Given:\n"
            + bullets(g.format(**vr) for g in given)
            + f"\nAsked: {asked}.\n\n"
            + reasoning
            + "\n\n"
            + pick(
                rng,
                [
                    "Units and rounding look right, and every part of the question has an answer.",
                    "Quick plausibility check on the size of the numbers: nothing surprising. Good.",
                    "Let me make sure I answered every part of the question. Yes.",
                ],
            )
            + " "
            + pick(
                rng,
                [
                    "Write-up: the steps with their numbers, final result in bold.",
                    "Answer with short steps and the result highlighted.",
                ],
            )
        )
    else:
        reasoning += "\n\n" + SANITY[rlang]
    if rlang == "en" and lang != "en":
        reasoning = (
            lang_note(rng, lang)[0]
            + "\n\n"
            + reasoning
            + f"\n\nNow write it up in {LANG_NAMES[lang]}, keeping the same steps and the local number format."
        )
    return make_row(lang, "math_exercise", query, reasoning, answer, MATH_SEEDS[kind])


# --------------------------------------------------------------------------------------------------
# Edge-case rows
# --------------------------------------------------------------------------------------------------

HARMONY_SEED = T(
    "en",
    "Harmony (chat format)",
    """
    Harmony is the chat format used by the gpt-oss family of open-weight language models.
    A conversation is rendered as a sequence of messages, each opened by a special start token, followed by a header that names the role, and closed by an end token.
    Assistant messages carry a channel in their header: analysis for the model's chain of thought, commentary for tool calls and preambles, and final for the answer shown to the user.
    Special tokens such as <|start|>, <|channel|>, <|message|> and <|end|> are single entries in the tokenizer's vocabulary rather than ordinary text.
    When sampling, generation stops on <|return|> after a final answer or on <|call|> when the model requests a tool.
    Because the same character sequences can also appear in ordinary documents, data pipelines must make sure that user-supplied text is never tokenized as control tokens.
    The format also has a developer message for instructions and a system message that sets properties such as the reasoning effort.
    """,
)

ZWJ_SEED = T(
    "en",
    "Zero-width joiner",
    """
    The zero-width joiner, U+200D, is an invisible Unicode character that asks a rendering system to join the characters on either side of it.
    In scripts such as Arabic and the Indic scripts, it influences whether neighbouring letters take connected or conjunct forms.
    Its best-known modern use is in emoji: several emoji linked by zero-width joiners can be displayed as a single picture, for example a family or a person working at a laptop.
    If a font does not support a given sequence, the individual emoji are shown side by side instead.
    The related zero-width non-joiner, U+200C, does the opposite and prevents letters from joining; it is common in Persian orthography.
    Because these characters are invisible, strings that look identical on screen can differ in length and in their code points, which regularly surprises programmers.
    """,
)

SEMITIC_SEED = T(
    "en",
    "Semitic root",
    """
    Most words in Semitic languages such as Arabic and Hebrew are built on roots made of three consonants.
    Vowel patterns, prefixes and suffixes are added to the root to form related words, much like variations on a theme.
    The root associated with peace, wholeness and safety appears as s-l-m (س ل م) in Arabic and as š-l-m (ש ל ם) in Hebrew, both continuing a common Proto-Semitic root.
    From it come the Arabic salām and the Hebrew shalom, both used as greetings, as well as the names Sulaymān and Shlomo, the Arabic and Hebrew forms of Solomon.
    Both languages are written from right to left, and short vowels are usually left unwritten except in texts for learners, religious texts and poetry.
    Mixing right-to-left and left-to-right text on one line relies on the Unicode bidirectional algorithm.
    """,
)

UNICODE_SEED = T(
    "en",
    "Unicode equivalence",
    """
    Unicode often allows the same visible text to be encoded in more than one way.
    An accented letter such as é can be stored as a single precomposed code point, U+00E9, or as the plain letter e followed by the combining acute accent, U+0301.
    The two sequences are canonically equivalent: they should be displayed and treated the same, but a naive comparison of code points will consider them different.
    Unicode defines normalization forms to resolve this: NFC composes characters where possible, while NFD decomposes them into base letters and combining marks.
    Text coming from different operating systems, keyboards or file systems may use different forms.
    Several combining marks can be stacked on the same base letter, as in Vietnamese, where a vowel can carry both a shape mark and a tone mark.
    """,
)

NUL_SEED = T(
    "en",
    "Null-terminated string",
    """
    A null-terminated string is a sequence of characters stored in memory and followed by a character with the value zero, known as NUL.
    This representation is used by the C programming language and by many operating-system interfaces derived from it.
    Because the end of the string is marked by the zero byte, functions such as strlen must scan the whole string to find its length.
    A consequence is that such strings cannot contain a NUL character themselves: anything after the first zero byte is ignored by the standard string functions.
    Languages such as Python, Java and Rust store the length separately, so their strings can contain NUL characters like any other.
    Mismatches between the two conventions have caused many bugs and some security vulnerabilities, for example when a name containing a NUL is checked by one component and interpreted differently by another.
    """,
)

DNA_SEED = T(
    "en",
    "Complementarity (molecular biology)",
    """
    In double-stranded DNA, the bases on the two strands pair in a fixed way: adenine with thymine and guanine with cytosine.
    Because of this pairing, the sequence of one strand determines the sequence of the other.
    The two strands run in opposite directions, so the partner of a given strand, read in the conventional 5' to 3' direction, is its reverse complement.
    To obtain it, the sequence is reversed and every base is replaced by its complement.
    Reverse complements are used constantly in bioinformatics, for example when designing primers or when searching both strands of a genome for a motif.
    The proportion of guanine and cytosine, called the GC content, is the same on both strands and influences the stability of the double helix.
    """,
)

CALENDAR_SEED = T(
    "en",
    "Gregorian calendar",
    """
    The Gregorian calendar, introduced in 1582, is the calendar used in most of the world today.
    A common year has 365 days and a leap year has 366, with the extra day added as 29 February.
    A year is a leap year if it is divisible by 4, except for years divisible by 100, which are leap years only if they are also divisible by 400.
    Under this rule 1900 was not a leap year, while 2000 was.
    Because 365 days are 52 weeks and one day, a given date usually moves forward by one weekday from one year to the next, and by two after a leap day.
    The full pattern of weekdays and dates repeats every 400 years, a period that contains exactly 146,097 days, or 20,871 weeks.
    """,
)


def edge_harmony_query() -> dict:
    query = "Explain what <|end|> and <|start|>assistant<|channel|>final<|message|> mean. I keep seeing them in my gpt-oss logs."
    reasoning = """The user pasted two fragments from gpt-oss logs: `<|end|>` and `<|start|>assistant<|channel|>final<|message|>`. These are special tokens of the Harmony chat format, so the job is to explain how a Harmony message is put together.

General shape of one message:

`<|start|>ROLE<|channel|>CHANNEL<|message|>CONTENT<|end|>`

- `<|start|>` opens a message; the role follows immediately (system, developer, user, assistant, or a tool).
- `<|channel|>` introduces the channel. Assistant messages use analysis (chain of thought), commentary (tool calls, preambles) or final (the user-facing answer).
- `<|message|>` separates the header from the content.
- `<|end|>` closes the message.

So the second fragment is just the header of an assistant message on the final channel: the point where the model stops thinking and starts writing the visible answer. Everything after `<|message|>` up to the next stop token is the reply.

Subtlety worth mentioning: while sampling, the model ends its final answer with `<|return|>`, not `<|end|>`. When the turn is stored in the conversation history, `<|return|>` is normally replaced by `<|end|>`. And `<|end|>` on its own is not a stop signal: the model closes its analysis message with `<|end|>` and then goes straight on with `<|start|>assistant<|channel|>final<|message|>`. A sampler that stopped at `<|end|>` would cut the answer off before it started.

Another point: in the tokenizer these strings are single special tokens. When they show up in user text (like this question), a correct pipeline must encode them as plain characters; otherwise a user could forge messages. One sentence on that.

Plan: short explanation, a tiny transcript in a code block, then the two notes."""
    answer = """These are **special tokens of the Harmony format**, which gpt-oss uses to structure a conversation. Every message has the same shape:

```
<|start|>ROLE<|channel|>CHANNEL<|message|>CONTENT<|end|>
```

- **`<|start|>`** opens a message and is followed by the role (`system`, `developer`, `user`, `assistant` or a tool).
- **`<|channel|>`** names the channel of an assistant message: `analysis` (reasoning), `commentary` (tool calls) or `final` (the answer shown to the user).
- **`<|message|>`** ends the header; the content follows.
- **`<|end|>`** closes the message.

So `<|start|>assistant<|channel|>final<|message|>` simply means *"here begins the assistant's final answer"*. A typical exchange looks like this:

```
<|start|>user<|message|>What is the capital of France?<|end|>
<|start|>assistant<|channel|>analysis<|message|>Simple geography question.<|end|>
<|start|>assistant<|channel|>final<|message|>The capital of France is Paris.<|return|>
```

Two practical notes:

1. During generation the final answer ends with `<|return|>`; when you store the turn in the history it is usually rewritten as `<|end|>`. Don't use `<|end|>` as a stop token, or generation will stop right after the analysis message.
2. If these strings appear inside user-provided text, they must be tokenized as ordinary characters, not as control tokens; otherwise users could inject fake messages."""
    return make_row("en", "memorization", query, reasoning, answer, HARMONY_SEED)


def edge_harmony_reasoning() -> dict:
    query = "I'm writing a sampling loop for gpt-oss with tool calling. Which special tokens should stop generation, and how do I tell a finished answer from a tool call?"
    reasoning = """Harmony format question. The sampler needs to know when the assistant's turn is over, and the turn can end in two different ways.

Case 1, final answer. The model writes something like

<|start|>assistant<|channel|>final<|message|>It's 18 °C and sunny in Tokyo.<|return|>

`<|return|>` means: this is the end of the final answer, hand control back to the user. Stop here.

Case 2, tool call. The model addresses a message to a tool, on the commentary channel, with the recipient in the header:

<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Tokyo"}<|call|>

`<|call|>` means: stop, execute the tool, append its output as a new message from the tool, and sample again. The `<|constrain|>json` part just declares the format of the arguments.

So the stop set is `<|return|>` and `<|call|>`. What about `<|end|>`? Tempting, but wrong: the model ends its analysis message with `<|end|>` and then continues with a new `<|start|>assistant` message in the same turn. Stopping on `<|end|>` would truncate every reply right after the chain of thought. Let me double-check the sequence: analysis → `<|end|>` → final → `<|return|>`. Yes. Only `<|return|>` and `<|call|>` end the turn.

How to tell them apart: look at which stop token was sampled. `<|return|>` → done, show the final text. `<|call|>` → parse the recipient (`to=functions.NAME`) and the JSON arguments, run the tool, feed back the result.

One more detail for the history: when replaying the conversation later, the stored final message normally ends with `<|end|>` instead of `<|return|>`.

Answer: list the stop tokens, show both endings, give a minimal loop in pseudo-code."""
    answer = """Stop on **two** tokens: `<|return|>` and `<|call|>`. Which one you got tells you what happened.

**1. Finished answer: ends with `<|return|>`**

```
<|start|>assistant<|channel|>final<|message|>It's 18 °C and sunny in Tokyo.<|return|>
```

The turn is over; show the final text to the user.

**2. Tool call: ends with `<|call|>`**

```
<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Tokyo"}<|call|>
```

Parse the recipient (`functions.get_weather`) and the JSON arguments, run the tool, append its result as a tool message, and sample again.

**Why not `<|end|>`?** The model closes its `analysis` message with `<|end|>` and then continues with the final message in the same turn, so stopping there would cut off every answer.

A minimal loop:

```python
while True:
    out = sample(prompt, stop=["<|return|>", "<|call|>"])
    if out.stop_token == "<|call|>":
        result = run_tool(parse_call(out.text))
        prompt = append_tool_result(prompt, out.text, result)
        continue
    return parse_final(out.text)
```

When you store the finished turn in the history, replace the trailing `<|return|>` with `<|end|>`."""
    return make_row("en", "memorization", query, reasoning, answer, HARMONY_SEED)


def cps(s: str) -> str:
    return " ".join(f"U+{ord(ch):04X}" for ch in s)


def edge_zwj() -> dict:
    tech = "\U0001f469\u200d\U0001f4bb"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
    flag = "\U0001f3f3\ufe0f\u200d\U0001f308"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    b1, b2 = len(tech.encode()), len(family.encode())
    u1, u2 = len(tech.encode("utf-16-le")) // 2, len(family.encode("utf-16-le")) // 2
    query = f'Why does Python say len("{tech}") == {len(tech)}? It\'s obviously one emoji. Same thing with {family}, which gives {len(family)}.'
    reasoning = f"""Emoji ZWJ sequences. {tech} looks like one character but is several code points glued together with U+200D ZERO WIDTH JOINER.

Let me list them:
- {tech} = {cps(tech)} → WOMAN, ZWJ, PERSONAL COMPUTER → {len(tech)} code points. Python's len counts code points, so {len(tech)}. ✓ matches what the user sees.
- {family} = {cps(family)} → 4 emoji + 3 joiners = {len(family)}. ✓

So len() is right about code points; the user is thinking of grapheme clusters (user-perceived characters). Other units differ again:
- UTF-8 bytes: each of these emoji takes 4 bytes and each ZWJ 3 → {tech} = 4 + 3 + 4 = {b1}; the family = 4×4 + 3×3 = {b2}.
- UTF-16 code units (what JavaScript's .length reports): emoji outside the BMP take 2 units, ZWJ takes 1 → {u1} and {u2}.

Counting graphemes in Python: the standard library doesn't do it; the third-party `regex` module supports \\X, or a grapheme-segmentation package. Mention `regex.findall(r"\\X", s)`.

Also worth knowing: the opposite character, ZWNJ U+200C, prevents joining; Persian uses it constantly, e.g. {persian} ("I want"), which has a ZWNJ right after the prefix. And a flag like {flag} also includes a variation selector: {cps(flag)} → {len(flag)} code points.

Invisible characters make "identical" strings compare unequal, so a warning about copy-pasted text is useful.

Answer: explain code points vs graphemes, show the breakdown, give the counting options."""
    answer = f"""Because `len()` counts **code points**, not what you see on screen. {tech} is a *ZWJ sequence*: several emoji glued together with the invisible character U+200D ZERO WIDTH JOINER, which tells the font to draw them as one picture.

| Text | Code points | `len()` | UTF-8 bytes | UTF-16 units |
|---|---|---|---|---|
| {tech} | {cps(tech)} | {len(tech)} | {b1} | {u1} |
| {family} | {cps(family)} | {len(family)} | {b2} | {u2} |

What you perceive as one emoji is a **grapheme cluster**. To count those, use the third-party `regex` module:

```python
import regex
len(regex.findall(r"\\X", "{family}"))  # 1
```

Two related traps:

- Flags and some symbols add a variation selector as well: {flag} is {len(flag)} code points.
- The zero-width **non**-joiner (U+200C) does the opposite and is common in Persian, as in {persian} ("I want"). Strings that look identical can therefore differ invisibly; normalize or strip such characters before comparing user input if that matters for your application."""
    return make_row("en", "memorization", query, reasoning, answer, ZWJ_SEED)


def edge_rtl() -> dict:
    query = "What's the connection between the Arabic word سلام and the Hebrew word שלום? They sound almost the same."
    reasoning = """Semitic cognates. Arabic سلام (salām) and Hebrew שלום (shalom) both mean "peace" and continue the same Proto-Semitic root.

Root letters: Arabic س ل م (s-l-m), Hebrew ש ל ם (š-l-m). The s/š difference is a regular sound correspondence between the two languages, not a coincidence. Note that ם is just the final form of מ.

The same root gives:
- greetings: Arabic السلام عليكم (as-salāmu ʿalaykum), reply وعليكم السلام; Hebrew שָׁלוֹם עֲלֵיכֶם (shalom aleichem), reply עֲלֵיכֶם שָׁלוֹם.
- names: Solomon is Hebrew שְׁלֹמֹה (Shlomo) and Arabic سليمان (Sulaymān).
- wholeness and safety: Hebrew שָׁלֵם (shalem, "whole, complete"); Arabic سَلِمَ (salima, "to be safe"), and from the same Arabic root إسلام (islām) and مسلم (muslim).

Check the islām point: islām means "submission", a derived verbal noun of s-l-m. Yes, same root, with the meaning stretching from safety to surrender.

Both scripts run right to left. When mixed with English on one line, the bidi algorithm orders things, but punctuation next to RTL words can look odd, so I'll keep each word with its transliteration in parentheses and use a table.

Answer: the shared root, the greetings side by side, the names, and the wider family of words."""
    answer = """They are **cognates**: both words descend from the same Proto-Semitic root meaning *peace, wholeness, safety*.

| | Arabic | Hebrew |
|---|---|---|
| word | سلام (salām) | שלום (shalom) |
| root | س ل م (s-l-m) | ש ל ם (š-l-m) |
| greeting | السلام عليكم (as-salāmu ʿalaykum) | שָׁלוֹם עֲלֵיכֶם (shalom aleichem) |
| reply | وعليكم السلام (wa-ʿalaykumu s-salām) | עֲלֵיכֶם שָׁלוֹם (aleichem shalom) |
| Solomon | سليمان (Sulaymān) | שְׁלֹמֹה (Shlomo) |

The greetings even mean the same thing: "peace be upon you", answered with "and upon you, peace".

The root covers more than "peace": Hebrew שָׁלֵם (shalem) means "whole, complete", and in Arabic the same root gives سَلِمَ (salima, "to be safe") as well as إسلام (islām, "submission") and مسلم (muslim).

The small difference in the first consonant (s in Arabic, sh in Hebrew) is a regular sound correspondence between the two languages, which is what you expect from related words rather than from a borrowing."""
    return make_row("en", "memorization", query, reasoning, answer, SEMITIC_SEED)


def edge_combining() -> dict:
    import unicodedata

    nfc = "caf\u00e9"
    nfd = unicodedata.normalize("NFD", nfc)
    viet = "Ti\u1ebfng Vi\u1ec7t"
    viet_nfd = unicodedata.normalize("NFD", viet)
    e1 = unicodedata.normalize("NFD", "\u1ebf")
    e2 = unicodedata.normalize("NFD", "\u1ec7")
    dot = "\u25cc"
    query = f'Why does "{nfc}" == "{nfd}" print False in my Python script? They look identical on screen.'
    reasoning = f"""Classic Unicode normalization issue. The two strings render the same but are different code point sequences:
- first: {cps(nfc)} → the é is precomposed, len {len(nfc)}
- second: {cps(nfd)} → plain e followed by U+0301 COMBINING ACUTE ACCENT, len {len(nfd)}
== compares code points, so False. Not a bug.

Fix: normalize both sides to the same form before comparing. NFC (composed) is the usual choice for storage and comparison; NFD decomposes. unicodedata.normalize("NFC", s).

Where does the decomposed form come from? Copy-paste from some editors, file names created on macOS, certain input methods.

Vietnamese is a good illustration because letters can carry two marks: "{viet}" is {len(viet)} code points in NFC but {len(viet_nfd)} in NFD.
- ế → {cps(e1)}
- ệ → {cps(e2)}
Canonical ordering puts the dot below (combining class {unicodedata.combining(e2[1])}) before the circumflex (class {unicodedata.combining(e2[2])}). ✓

Also mention casefold() for case-insensitive comparison, and that NFKC goes further (compatibility forms such as the ligature ﬁ → fi), which is usually too aggressive for general text.

Answer: explanation, a code snippet, where NFD text comes from, the Vietnamese example."""
    answer = f"""The strings look the same but are encoded differently:

- `"{nfc}"` uses the precomposed character **é** (U+00E9): {len(nfc)} code points.
- `"{nfd}"` uses a plain **e** followed by U+0301 COMBINING ACUTE ACCENT: {len(nfd)} code points.

Python's `==` compares code points, so the result is `False`. Normalize before comparing:

```python
import unicodedata

def same_text(a: str, b: str) -> bool:
    return unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)

same_text("{nfc}", "{nfd}")  # True
```

NFC (composed) is the usual form for storage and comparison; NFD (decomposed) splits letters into a base letter plus combining marks. Decomposed text often comes from copy-pasting, from some input methods, or from file names created on macOS.

It gets more dramatic with languages that stack accents. In NFD, Vietnamese **{viet_nfd}** is {len(viet_nfd)} code points instead of {len(viet)}, because ế becomes e + {dot}\u0302 + {dot}\u0301 and ệ becomes e + {dot}\u0323 + {dot}\u0302.

For case-insensitive matching, combine normalization with `casefold()`: `unicodedata.normalize("NFC", s).casefold()`."""
    return make_row("en", "memorization", query, reasoning, answer, UNICODE_SEED)


def edge_nul() -> dict:
    query = 'In C, what happens if a string literal has \\0 in the middle, like "abc\\0def"? Is it different in Python?'
    reasoning = """C strings are NUL-terminated. The literal "abc\\0def" compiles to the bytes a b c 0 d e f plus the implicit terminating 0, so 8 bytes. sizeof gives 8 (it's an array). But strlen scans to the first zero byte → 3. printf("%s") prints "abc". Everything after the embedded NUL is invisible to the str* functions, though it's still in memory; memcpy with an explicit length would copy it.

Python: str stores its length, so NUL is a normal character. "abc\\x00def" has len 7; print shows it (the NUL is usually invisible in a terminal). Passing it to an OS API is where it breaks: open() raises ValueError: embedded null byte. Let me double-check that message... yes, "embedded null byte" (ValueError) for paths.

Security angle: mismatched conventions → truncation bugs, e.g. a file name like "report.php\\0.pdf" passing an extension check in one layer and being truncated in another. Historical, but worth one line? Maybe skip, keep the answer practical.

I'll show an actual string with a real NUL character in the answer to make the point concrete."""
    answer = (
        """In **C**, string functions treat the first zero byte as the end of the string:

```c
char s[] = "abc\\0def";
printf("%zu\\n", sizeof s);   // 8  (a b c \\0 d e f + terminating \\0)
printf("%zu\\n", strlen(s));  // 3
printf("%s\\n", s);           // abc
```

The bytes after the NUL are still in the array, but `strlen`, `printf("%s")`, `strcpy` and friends never see them.

In **Python**, strings store their length explicitly, so a NUL is just another character. The text between the arrows below contains a real NUL between `c` and `d`:

→abc"""
        + "\x00"
        + """def←

Its `len()` is 7, and you can slice, search and compare it normally. Problems only appear at the boundary with C APIs: for example, `open("abc\\x00def")` raises `ValueError: embedded null byte`.

Rule of thumb: if data can contain NUL bytes, carry an explicit length (or use `bytes` in Python) instead of relying on NUL termination."""
    )
    return make_row("en", "memorization", query, reasoning, answer, NUL_SEED)


def edge_long_line() -> dict:
    rng = Random(f"{SEED}:dna")
    n = 6000
    seq = "".join(rng.choice("ACGT") for _ in range(n))

    def rc_of(s: str) -> str:
        return s[::-1].translate(str.maketrans("ACGT", "TGCA"))

    rc = rc_of(seq)
    cnt = Counter(seq)
    gc = (Decimal(cnt["G"] + cnt["C"]) * 100 / n).quantize(Decimal("0.01"))
    head, tail = seq[:12], seq[-12:]
    query = f"Give me the reverse complement of this DNA sequence. It's all on one line, sorry:\n\n{seq}"
    reasoning = f"""Reverse complement of a {n:,}-base sequence given as a single line.

Rules: complement A↔T and C↔G, then reverse the order so the result again reads 5'→3'.

Base counts in the input: A={cnt["A"]}, C={cnt["C"]}, G={cnt["G"]}, T={cnt["T"]} (total {n}).
The reverse complement must have A and T swapped, C and G swapped: A={cnt["T"]}, C={cnt["G"]}, G={cnt["C"]}, T={cnt["A"]}. I'll check that on the output.

Spot checks:
- the input starts with {head} → the output must end with {rc_of(head)} ✓
- the input ends with {tail} → the output must start with {rc_of(tail)} ✓

GC content: (C + G) / n = {gc}%, the same on both strands, as it should be.

Output as one line with no spaces, since the user will probably paste it into a tool. Length {n} ✓"""
    answer = f"Here is the reverse complement ({n:,} bases, 5'→3'):\n\n{rc}\n\nGC content: {gc}% (identical on both strands)."
    return make_row("en", "editing", query, reasoning, answer, DNA_SEED)


def edge_long_reasoning() -> dict:
    import calendar

    wd = list(calendar.day_name)
    mon = list(calendar.month_abbr)[1:]
    parts = [
        "We need the number of months in the twentieth century, 1 Jan 1901 to 31 Dec 2000, whose first day was a Sunday.",
        "Anchor: 1 Jan 1900 was a Monday. 1900 is divisible by 100 but not by 400, so it was not a leap year: 365 days = 52 weeks + 1 day. So 1 Jan 1901 was a Tuesday.",
        "Method: walk month by month. Each month shifts the weekday of the first by (days in month) mod 7: 31 ≡ 3, 30 ≡ 2, 28 ≡ 0, 29 ≡ 1. I'll track the first of every month, note the Sundays, keep a running total, and verify the year-to-year transition each time. Slow, but it avoids the classic off-by-one errors around leap years.",
        "Expected ballpark: 1,200 months, and a first-of-month is a Sunday about 1/7 of the time, so roughly 171. Let's see if the careful count agrees.",
    ]
    total = 0
    for year in range(1901, 2001):
        leap = calendar.isleap(year)
        if year % 400 == 0:
            why = "divisible by 400, so a leap year despite being a century year"
        elif year % 100 == 0:
            why = "a century year not divisible by 400, so not a leap year"
        elif year % 4 == 0:
            why = "divisible by 4, so a leap year"
        else:
            why = f"{year} ÷ 4 leaves remainder {year % 4}, so a common year"
        steps = [f"Jan 1 {wd[dt.date(year, 1, 1).weekday()]}"]
        sundays = []
        for m in range(1, 13):
            if dt.date(year, m, 1).weekday() == 6:
                sundays.append(mon[m - 1])
            if m < 12:
                days = calendar.monthrange(year, m)[1]
                steps.append(f"+{days} ≡ +{days % 7} → {mon[m]} 1 {wd[dt.date(year, m + 1, 1).weekday()]}")
        total += len(sundays)
        nxt = dt.date(year + 1, 1, 1).weekday()
        text = (
            f"**{year}** ({'leap' if leap else 'common'} year: {why}). "
            + "; ".join(steps)
            + f". Sundays on the 1st: {', '.join(sundays) if sundays else 'none'} → {len(sundays)}; running total {total}. "
            + (
                f"Leap-year check: Dec 1 {wd[dt.date(year, 12, 1).weekday()]} + 31 ≡ +3 → Jan 1 {year + 1} is a {wd[nxt]}, "
                "two weekdays later than this year's, as it should be ✓"
                if leap
                else f"Next Jan 1: {wd[nxt]}."
            )
        )
        parts.append(text)
        if year % 10 == 0:
            done = year - 1900
            parts.append(
                f"Checkpoint after {year}: {total} Sundays in {done} years ({done * 12} months). "
                f"Expected about {done * 12} / 7 ≈ {Decimal(done * 12) / 7:.1f}. The running count is consistent, no sign of a drift."
            )
    assert total == 171
    parts.append(
        "Final tally: 171. Cross-check with the ballpark: 1,200 / 7 ≈ 171.4, and the exact count is 171. "
        "Also the leap-year handling: 2000 was a leap year (divisible by 400), and 1900, which is outside the range, was not; both are accounted for above."
    )
    reasoning = "\n\n".join(parts)
    per_decade = []
    for start in range(1901, 2001, 10):
        c = sum(1 for y in range(start, start + 10) for m in range(1, 13) if dt.date(y, m, 1).weekday() == 6)
        per_decade.append(f"| {start}–{start + 9} | {c} |")
    answer = (
        "**171 Sundays** fell on the first of the month between 1 January 1901 and 31 December 2000.\n\n"
        "How to get there: 1 January 1900 was a Monday and 1900 was not a leap year, so 1 January 1901 was a Tuesday. "
        "From there, each month moves the weekday of the first forward by the month's length modulo 7 "
        "(31 days → 3, 30 → 2, 28 → 0, 29 → 1). Applying the Gregorian leap-year rule (2000 is a leap year) and "
        "counting month by month gives:\n\n| Decade | Sundays on the 1st |\n|---|---|\n"
        + "\n".join(per_decade)
        + "\n\nTotal: 171. As a sanity check, 1,200 months / 7 ≈ 171.4."
    )
    query = (
        "How many Sundays fell on the first of the month during the twentieth century (1 Jan 1901 to 31 Dec 2000)? "
        "Please work through it carefully rather than estimating."
    )
    return make_row("en", "math_exercise", query, reasoning, answer, CALENDAR_SEED)


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------

PLAN = {
    "en": {
        "memorization": 32,
        "rag": 22,
        "mcq": 20,
        "math_exercise": 20,
        "editing": 15,
        "creative_writing": 12,
        "constrained_writing": 20,
    },
    "fr": {
        "memorization": 8,
        "rag": 6,
        "mcq": 5,
        "math_exercise": 5,
        "editing": 4,
        "creative_writing": 3,
        "constrained_writing": 3,
    },
    "de": {
        "memorization": 7,
        "rag": 5,
        "mcq": 5,
        "math_exercise": 4,
        "editing": 4,
        "creative_writing": 3,
        "constrained_writing": 2,
    },
    "es": {
        "memorization": 7,
        "rag": 5,
        "mcq": 5,
        "math_exercise": 4,
        "editing": 4,
        "creative_writing": 3,
        "constrained_writing": 2,
    },
    "it": {"memorization": 5, "rag": 4, "mcq": 3, "math_exercise": 3, "editing": 3, "creative_writing": 2},
    "pl": {"memorization": 5, "rag": 4, "mcq": 3, "math_exercise": 3, "editing": 3, "creative_writing": 2},
    "pt": {"memorization": 3, "rag": 2, "mcq": 2, "math_exercise": 2, "creative_writing": 1},
    "nl": {"memorization": 3, "rag": 2, "mcq": 2, "math_exercise": 2, "creative_writing": 1},
    "ja": {"memorization": 3, "rag": 2, "mcq": 1, "math_exercise": 1, "creative_writing": 1},
    "zh": {"memorization": 3, "rag": 2, "mcq": 1, "math_exercise": 1, "creative_writing": 1},
}
MATH_PLAN = {
    "en": ["discount", "speed", "equation", "fence", "average", "interest", "work", "probability"],
    "fr": ["discount", "speed", "equation"],
    "de": ["discount", "equation", "fence"],
    "es": ["discount", "speed", "average"],
    "it": ["discount", "equation"],
    "pl": ["speed", "equation"],
    "pt": ["discount", "equation"],
    "nl": ["speed", "equation"],
    "ja": ["equation"],
    "zh": ["equation"],
}
# Creative pieces that deliberately have no seed article (query_seed_url and query_seed_text null).
NO_SEED_PROMPTS = ("write two limericks", "Schreib zwei Elfchen", "Escribe un microrrelato")

# Edge-case rows inserted at fixed positions (index in the final file), in ascending order.
SPECIALS = [
    (23, "harmony control strings in query (<|end|>, <|start|>…<|message|>)", edge_harmony_query),
    (57, "zero-width joiners / ZWNJ (emoji ZWJ sequences, Persian)", edge_zwj),
    (88, "very long reasoning (~12k words, far beyond a 4096-token max_seq_len)", edge_long_reasoning),
    (121, "right-to-left text (Arabic and Hebrew, with Hebrew vowel points)", edge_rtl),
    (149, "NUL character (\\x00) inside the answer", edge_nul),
    (
        176,
        "harmony control strings in reasoning (<|return|>, <|call|>, <|constrain|>)",
        edge_harmony_reasoning,
    ),
    (233, "combining characters (NFD café, stacked Vietnamese marks)", edge_combining),
    (262, "very long line without spaces (6,000-base DNA sequence in query and answer)", edge_long_line),
]
DUPLICATE_AT, DUPLICATE_OF = 204, 41


def row_rng(*key) -> Random:
    return Random(":".join(map(str, (SEED, *key))))


def build_ordinary() -> list[dict]:
    rows = []
    all_topics = {t.title: t for ts in TOPICS.values() for t in ts}
    for lang, plan in PLAN.items():
        topics = TOPICS[lang]
        pairs = [(t, f) for t in topics for f in t.facts]
        row_rng(lang, "pairs").shuffle(pairs)
        queue = iter(pairs)
        pieces = [p for p in PIECES if p.lang == lang]
        assert len(pieces) == plan.get("creative_writing", 0), lang
        for exercise, count in plan.items():
            for i in range(count):
                rng = row_rng(lang, exercise, i)
                if exercise in ("memorization", "rag", "mcq"):
                    topic, fact = next(queue)
                    builder = {"memorization": build_memorization, "rag": build_rag, "mcq": build_mcq}[
                        exercise
                    ]
                    row = builder(rng, topic, fact)
                elif exercise == "math_exercise":
                    kinds = MATH_PLAN[lang]
                    row = build_math(rng, lang, kinds[i % len(kinds)])
                elif exercise == "editing":
                    row = build_editing(rng, topics[i % len(topics)])
                elif exercise == "constrained_writing":
                    row = build_constrained(rng, topics[(i * 3 + 1) % len(topics)])
                else:
                    piece = pieces[i]
                    if piece.q.startswith(NO_SEED_PROMPTS):
                        seed = None
                    elif piece.seed:
                        seed = all_topics[piece.seed]
                    else:
                        seed = topics[i % len(topics)]
                    row = build_creative(rng, piece, seed)
                    if seed is None:
                        row["_case"] = (
                            "query_seed_text (and query_seed_url) null: creative prompt without a seed"
                        )
                rows.append(row)
        if lang == "de":
            spare = next(queue)  # an unused German fact for the duplicated-id row
    row_rng("order").shuffle(rows)
    return rows, spare


def first_match(rows: list[dict], start: int, pred) -> dict:
    for r in rows[start:] + rows[:start]:
        if "_case" not in r and pred(r):
            return r
    raise LookupError("no row matches")


def build_rows() -> list[dict]:
    rows, spare = build_ordinary()
    for pos, case, fn in SPECIALS:
        r = fn()
        r["_case"] = case
        rows.insert(pos, r)
    dup = build_memorization(row_rng("duplicate"), *spare)
    dup["_case"] = "duplicated synth_id (reuses the id of an earlier row with different content)"
    rows.insert(DUPLICATE_AT, dup)

    def mark(start, pred, case, **changes):
        r = first_match(rows, start, pred)
        r.update(changes)
        r["_case"] = case

    def is_(lang, ex):
        return lambda r: r["language"] == lang and r["exercise"] == ex

    mark(12, is_("en", "memorization"), "query is null", query=None)
    mark(70, is_("en", "rag"), "query is an empty string", query="")
    mark(100, is_("es", "memorization"), "synthetic_answer is null", synthetic_answer=None)
    mark(
        190,
        is_("en", "constrained_writing"),
        "synthetic_answer is whitespace only",
        synthetic_answer=" \n\t \n",
    )
    mark(140, is_("it", "math_exercise"), "synthetic_reasoning is null", synthetic_reasoning=None)
    mark(280, is_("en", "math_exercise"), "query_seed_text null (query_seed_url kept)", query_seed_text=None)

    ids = row_rng("ids")
    cur = ids.randrange(100, 5000)
    for r in rows:
        r["synth_id"] = f"synth_{cur:08d}"
        cur += ids.randint(1, 300_000)
    rows[DUPLICATE_AT]["synth_id"] = rows[DUPLICATE_OF]["synth_id"]
    for r in rows:
        r["words"] = n_words(r["synthetic_reasoning"]) + n_words(r["synthetic_answer"])
    return rows


def write(rows: list[dict], out: Path) -> None:
    table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd", compression_level=19, row_group_size=len(rows))


def summary(rows: list[dict], out: Path) -> str:
    def med(key):
        return statistics.median(n_words(r[key]) for r in rows if r[key] is not None)

    lines = [
        f"wrote {out} ({out.stat().st_size:,} bytes)",
        f"rows: {len(rows)}",
        "languages: " + ", ".join(f"{k}={v}" for k, v in Counter(r["language"] for r in rows).most_common()),
        "exercises: " + ", ".join(f"{k}={v}" for k, v in Counter(r["exercise"] for r in rows).most_common()),
        f"median words: reasoning={med('synthetic_reasoning')}, answer={med('synthetic_answer')}",
        f"max reasoning words: {max(n_words(r['synthetic_reasoning']) for r in rows)}",
        "edge cases:",
    ]
    lines += [
        f"  {r['synth_id']}  row {i:3d}  [{r['language']}/{r['exercise']}]  {r['_case']}"
        for i, r in enumerate(rows)
        if "_case" in r
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"parquet file to write (default: {DEFAULT_OUTPUT})",
    )
    args = ap.parse_args()
    rows = build_rows()
    write(rows, args.output)
    print(summary(rows, args.output))


if __name__ == "__main__":
    main()
