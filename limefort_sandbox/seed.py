"""A deterministic, Swedish-looking CRM for the sandbox Lime Go server.

`generate()` returns JSON:API resources exactly as the server serves them. Everything is drawn
from one `random.Random(seed)`, in a fixed order, so the same seed and sizes give the same
ids, names and numbers; timestamps are offsets from `now` (default: the real current time).

The data is deliberately untidy where real CRMs are: organisation numbers in several formats,
some with a wrong check digit, some missing, some Norwegian; countries written as "SE",
"Sverige" or "Sweden"; a few names with characters Fortnox refuses; a few deal names longer
than a Fortnox row description; a few zero-value deals.
"""

from __future__ import annotations

import functools
import gc
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stdnum import luhn

SURNAMES = [
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Gustafsson",
    "Pettersson",
    "Jonsson",
    "Jansson",
    "Hansson",
    "Bengtsson",
    "Jönsson",
    "Lindberg",
    "Jakobsson",
    "Magnusson",
    "Olofsson",
    "Lindström",
    "Lindqvist",
    "Lindgren",
    "Axelsson",
    "Berg",
    "Bergström",
    "Lundberg",
    "Lind",
    "Lundgren",
    "Lundqvist",
    "Mattsson",
    "Berglund",
    "Fredriksson",
    "Sandberg",
    "Henriksson",
    "Forsberg",
    "Sjöberg",
    "Wallin",
    "Engström",
    "Eklund",
    "Danielsson",
    "Lundin",
    "Håkansson",
    "Björk",
    "Bergman",
    "Gunnarsson",
    "Holm",
    "Wikström",
    "Samuelsson",
    "Isaksson",
    "Fransson",
    "Bergqvist",
    "Nyström",
    "Holmberg",
    "Arvidsson",
    "Löfgren",
    "Söderberg",
    "Nyberg",
    "Blomqvist",
    "Claesson",
    "Nordström",
    "Mårtensson",
    "Lundström",
    "Viklund",
    "Björklund",
    "Eliasson",
    "Pålsson",
    "Berggren",
    "Sandström",
    "Nordin",
    "Ström",
    "Åberg",
    "Hermansson",
    "Ekström",
    "Holmgren",
    "Sundberg",
    "Hedlund",
    "Dahlberg",
    "Hellström",
    "Sjögren",
    "Falk",
    "Öberg",
    "Åkesson",
    "Östlund",
    "Ågren",
    "Närhi",
    "Älmqvist",
]
FIRST_NAMES = [
    "Anna",
    "Eva",
    "Maria",
    "Karin",
    "Sara",
    "Kristina",
    "Lena",
    "Emma",
    "Kerstin",
    "Ingrid",
    "Marie",
    "Malin",
    "Jenny",
    "Annika",
    "Hanna",
    "Linda",
    "Susanne",
    "Elin",
    "Sofia",
    "Åsa",
    "Ulla",
    "Birgitta",
    "Märta",
    "Lars",
    "Mikael",
    "Anders",
    "Johan",
    "Erik",
    "Per",
    "Karl",
    "Peter",
    "Jan",
    "Thomas",
    "Daniel",
    "Fredrik",
    "Hans",
    "Andreas",
    "Stefan",
    "Mats",
    "Magnus",
    "Jonas",
    "Mattias",
    "Björn",
    "Göran",
    "Håkan",
    "Åke",
    "Sören",
    "Örjan",
    "Jörgen",
    "Ola",
    "Nils",
    "Agnes",
    "Tove",
]
BRANCHES = (
    "Trähandel",
    "Bygg",
    "Elteknik",
    "Rör",
    "Måleri",
    "Konsult",
    "Transport",
    "Åkeri",
    "Fastigheter",
    "Redovisning",
    "Städ",
    "Snickeri",
    "Mekaniska Verkstad",
    "Glas",
    "Plåtslageri",
    "Trädgård",
    "Livs",
    "Bageri",
    "Kök & Bad",
    "IT-tjänster",
    "Reklambyrå",
    "Kommunikation",
    "Arkitektkontor",
    "Tandvård",
    "Logistik",
    "Ventilation",
    "Kyl & Värme",
    "Energi",
    "Sågverk",
    "Möbler",
    "Skog",
    "Lantbruk",
    "Tryckeri",
    "Säkerhet",
    "Låssmed",
)
PREFIXES = [
    "Nordisk",
    "Svensk",
    "Norrländsk",
    "Västsvensk",
    "Skånsk",
    "Mälardalens",
    "Östgöta",
    "Värmlands",
    "Smålands",
    "Göteborgs",
    "Stockholms",
    "Uppsala",
    "Jämtlands",
    "Dalarnas",
    "Hallands",
    "Gotlands",
    "Blekinge",
    "Kustens",
    "Fjällets",
    "Skärgårdens",
    "Norra",
    "Södra",
    "Östra",
    "Västra",
]
# Names with characters outside Fortnox's set (not in Windows-1252): a sync must clean them.
ODD_NAMES = (
    "Łukasz Bygg AB",
    "Ōsaka Sushi Sverige AB",
    "Café ☕ Hörnan AB",
    "Şahin Import AB",
    "Pilen → Logistik AB",
    "Stjärnfall ★ Event AB",
)
STREETS = [
    "Storgatan",
    "Drottninggatan",
    "Kungsgatan",
    "Hamngatan",
    "Skolgatan",
    "Kyrkogatan",
    "Järnvägsgatan",
    "Stationsgatan",
    "Nygatan",
    "Torggatan",
    "Björkvägen",
    "Källvägen",
    "Industrivägen",
    "Ängsvägen",
    "Granvägen",
    "Tallvägen",
    "Sjövägen",
    "Åsgatan",
    "Götgatan",
    "Vasagatan",
    "Sveavägen",
    "Fjällgatan",
    "Hantverkargatan",
    "Bruksgatan",
    "Mästargatan",
    "Smedjegatan",
    "Lärkvägen",
    "Ringvägen",
    "Strandvägen",
    "Ölandsgatan",
    "Åkervägen",
    "Ekbacken",
] + ["Östra Långgatan", "Västra Hamngatan", "Södra Förstadsgatan", "Lilla Torget"]
# (city, postal-code prefix range, county, phone area code without the leading 0)
CITIES = (
    ("Stockholm", (111, 118), "Stockholms län", "8"),
    ("Göteborg", (411, 418), "Västra Götalands län", "31"),
    ("Malmö", (211, 217), "Skåne län", "40"),
    ("Uppsala", (751, 754), "Uppsala län", "18"),
    ("Västerås", (721, 725), "Västmanlands län", "21"),
    ("Örebro", (702, 703), "Örebro län", "19"),
    ("Linköping", (582, 587), "Östergötlands län", "13"),
    ("Helsingborg", (252, 256), "Skåne län", "42"),
    ("Jönköping", (553, 556), "Jönköpings län", "36"),
    ("Norrköping", (602, 603), "Östergötlands län", "11"),
    ("Lund", (222, 227), "Skåne län", "46"),
    ("Umeå", (903, 907), "Västerbottens län", "90"),
    ("Gävle", (802, 806), "Gävleborgs län", "26"),
    ("Borås", (503, 507), "Västra Götalands län", "33"),
    ("Södertälje", (151, 152), "Stockholms län", "8"),
    ("Eskilstuna", (632, 633), "Södermanlands län", "16"),
    ("Karlstad", (652, 656), "Värmlands län", "54"),
    ("Täby", (183, 187), "Stockholms län", "8"),
    ("Växjö", (352, 355), "Kronobergs län", "470"),
    ("Halmstad", (302, 305), "Hallands län", "35"),
    ("Luleå", (972, 977), "Norrbottens län", "920"),
    ("Sundsvall", (852, 857), "Västernorrlands län", "60"),
    ("Östersund", (831, 832), "Jämtlands län", "63"),
    ("Trollhättan", (461, 462), "Västra Götalands län", "520"),
    ("Kalmar", (392, 393), "Kalmar län", "480"),
    ("Falun", (791, 791), "Dalarnas län", "23"),
    ("Skellefteå", (931, 931), "Västerbottens län", "910"),
    ("Kiruna", (981, 981), "Norrbottens län", "980"),
    ("Visby", (621, 621), "Gotlands län", "498"),
    ("Ystad", (271, 271), "Skåne län", "411"),
    ("Åre", (837, 837), "Jämtlands län", "647"),
    ("Mölndal", (431, 431), "Västra Götalands län", "31"),
    ("Solna", (169, 171), "Stockholms län", "8"),
    ("Nacka", (131, 132), "Stockholms län", "8"),
    ("Kristianstad", (291, 291), "Skåne län", "44"),
    ("Karlskrona", (371, 371), "Blekinge län", "455"),
    ("Ängelholm", (262, 262), "Skåne län", "431"),
    ("Örnsköldsvik", (891, 891), "Västernorrlands län", "660"),
)
NORWAY = (("Oslo", "22"), ("Bergen", "55"), ("Trondheim", "73"))
JOB_TITLES = (
    "VD",
    "Inköpschef",
    "Ekonomichef",
    "CFO",
    "Projektledare",
    "Försäljningschef",
    "Driftchef",
    "Ägare",
    "Kontorsansvarig",
    None,
)
PRODUCTS = (
    "Ramavtal",
    "Serviceavtal",
    "Licenser",
    "Konsulttimmar",
    "Installation av värmepump",
    "Takomläggning",
    "Fönsterbyte",
    "Ombyggnad av kontor",
    "Leverans av virke",
    "Årligt underhållsavtal",
    "Utbildning i arbetsmiljö",
    "Systemintegration",
    "Ny webbplats",
    "Städavtal",
    "Fordonsleasing",
    "Flytthjälp",
    "Revision",
    "Bokslut",
    "Kylaggregat",
    "Solceller",
    "Laddboxar",
    "Säkerhetsgenomgång",
)

# (name, category, probability) in pipeline order
STAGES = (
    ("Kontakt", "open", 10),
    ("Behov", "open", 25),
    ("Offert", "open", 50),
    ("Förhandling", "open", 75),
    ("Vunnen", "won", 100),
    ("Förlorad", "lost", 0),
)
# (key, label, entity_type, field_type); entity_type is the resource type (Lime Go's form)
CUSTOM_FIELDS = (
    ("visiting_street", "Besöksadress", "companies", "text"),
    ("visiting_postal_code", "Besökspostnummer", "companies", "text"),
    ("visiting_city", "Besöksort", "companies", "text"),
    ("visiting_country", "Besöksland", "companies", "text"),
    ("industry", "Bransch", "companies", "text"),
    ("po_number", "Kundens ordernummer", "deals", "text"),
    ("contract_length", "Avtalslängd", "deals", "number"),
    ("delivery_date", "Leveransdatum", "deals", "date"),
)

_ASCII = str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ü": "u", "æ": "ae", "ø": "o"})


def iso(dt: datetime) -> str:
    """Fixed-width ISO 8601 UTC with microseconds and a Z (so strings sort like times)."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def luhn_digit(digits: str) -> int:
    """The Luhn check digit for a string of digits (Swedish organisation/personal numbers)."""
    return int(luhn.calc_check_digit(digits))


def valid_orgnr(value: str) -> bool:
    """True for a 10-digit Swedish number with a good check digit, in any of the usual
    formats ("556036-0793", "5560360793", "16556036-0793", "19640823-3234")."""
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) == 12:
        digits = digits[2:]
    if len(digits) != 10 or any(ch not in "0123456789- " for ch in value.strip()):
        return False
    return luhn_digit(digits[:9]) == int(digits[9])


_NON_WORD = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=65536)
def slug(name: str) -> str:
    """An e-mail domain label for a company name: "Åkesson & Söner AB" -> "akessonsoner"."""
    words = _NON_WORD.split(name.lower().translate(_ASCII))
    return "".join(w for w in words if w not in ("ab", "hb", "kb", "och"))[:30] or "foretag"


@dataclass
class SeedData:
    owners: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    definitions: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    deals: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


class _Gen:
    """Random helpers built on `random()` alone (much faster than randrange/choice, which
    matters when a benchmark wants 100 000 companies and deals in a few seconds)."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.r = self.rng.random
        self.now = now
        self.now_naive = now.astimezone(UTC).replace(tzinfo=None)
        self.orgnrs: set[str] = set()

    def below(self, n: int) -> int:
        return int(self.r() * n)

    def pick(self, seq: Any) -> Any:
        return seq[int(self.r() * len(seq))]

    def between(self, lo: int, hi: int) -> int:
        """lo <= n < hi"""
        return lo + int(self.r() * (hi - lo))

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.r()

    def uid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def ago(self, seconds: float) -> str:
        return (self.now_naive - timedelta(seconds=seconds)).isoformat(
            timespec="microseconds"
        ) + "Z"

    def digits(self, n: int) -> str:
        return f"{int(self.r() * 10**n):0{n}d}"

    def phone(self, area: str) -> str:
        r = self.r()
        if area == "8":
            local = f"{self.digits(3)} {self.digits(2)} {self.digits(2)}"
        else:
            local = f"{self.digits(2)} {self.digits(2)} {self.digits(2)}"
        if r < 0.6:
            return f"0{area}-{local}"
        if r < 0.9:
            return f"+46 {area} {local}"
        return f"0{area}{local.replace(' ', '')}"

    def mobile(self) -> str:
        prefix = self.pick(("70", "72", "73", "76", "79"))
        local = f"{self.digits(3)} {self.digits(2)} {self.digits(2)}"
        r = self.r()
        if r < 0.6:
            return f"0{prefix}-{local}"
        if r < 0.85:
            return f"+46 {prefix} {local}"
        return f"0{prefix}{local.replace(' ', '')}"

    def orgnr_digits(self) -> str:
        while True:
            # mostly aktiebolag (5), some HB/KB (9), state (2); third digit >= 2 (not a birth month)
            r = self.r
            body = f"{'5555555592'[int(r() * 10)]}{int(r() * 10)}{2 + int(r() * 8)}{int(r() * 1e6):06d}"
            if body not in self.orgnrs:
                self.orgnrs.add(body)
                return body + str(luhn_digit(body))

    def business_id(self) -> str | None:
        r = self.r()
        if r < 0.05:
            return self.pick((None, ""))
        number = self.orgnr_digits()
        if r < 0.10:  # a typo: wrong check digit
            number = number[:9] + str((int(number[9]) + self.between(1, 10)) % 10)
        f = self.r()
        if f < 0.62:
            return f"{number[:6]}-{number[6:]}"
        if f < 0.90:
            return number
        if f < 0.97:
            return f"16{number[:6]}-{number[6:]}"
        return f" {number[:6]}-{number[6:]} "

    def street(self) -> str:
        r = self.r()
        if r < 0.05:
            return f"Box {self.between(1, 9999)}"
        s = f"{self.pick(STREETS)} {self.between(1, 120)}"
        if r < 0.15:
            s += self.pick("ABCD")
        elif r < 0.20:
            s += f", {self.between(1, 6)} tr"
        return s

    def postal_code(self, lo_hi: tuple[int, int]) -> str:
        prefix = self.between(lo_hi[0], lo_hi[1] + 1)
        rest = self.digits(2)
        return f"{prefix} {rest}" if self.r() < 0.9 else f"{prefix}{rest}"

    def sweden(self) -> str | None:
        r = self.r()
        if r < 0.5:
            return "SE"
        if r < 0.75:
            return "Sverige"
        if r < 0.92:
            return "Sweden"
        return None

    def company_name(self, city: str) -> str:
        r = self.r()
        sur = self.pick(SURNAMES)
        branch = self.pick(BRANCHES)
        if r < 0.01:
            return self.pick(ODD_NAMES)
        if r < 0.15:
            return f"{sur} & Söner AB"
        if r < 0.35:
            return f"{self.pick(PREFIXES)} {branch} AB"
        if r < 0.55:
            return f"{sur}s {branch} AB"
        if r < 0.70:
            return f"{sur} {branch} AB"
        if r < 0.80:
            return f"{city} {branch} AB"
        if r < 0.88:
            return f"{self.pick(PREFIXES)} {branch} {self.pick(('HB', 'KB'))}"
        if r < 0.95:
            return f"{self.pick(FIRST_NAMES)} {sur} {branch}"
        return f"AB {sur} & {self.pick(SURNAMES)}"


def _resource(
    type_: str,
    id_: str,
    attributes: dict[str, Any],
    relationships: dict[str, Any] | None = None,
    revision: int | None = 1,
) -> dict[str, Any]:
    """A JSON:API resource. `meta.revision` is a numeric *string* (Lime Go's format);
    `revision=None` leaves out `meta` (owners have no revision), `relationships=None` the
    relationships (reference data has none)."""
    res: dict[str, Any] = {"type": type_, "id": id_, "attributes": attributes}
    if relationships is not None:  # reference data (owners, stages, ...) has none at all
        res["relationships"] = relationships
    if revision is not None:
        res["meta"] = {"revision": str(revision)}
    return res


def generate(*args: Any, **kwargs: Any) -> SeedData:
    """See `_generate`. The cyclic garbage collector is paused meanwhile: hundreds of
    thousands of small dicts would otherwise trigger full collections over and over."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(*args, **kwargs)
    finally:
        if was_enabled:
            gc.enable()


def _generate(
    seed: int = 7,
    companies: int = 40,
    deals: int = 60,
    contacts: int | None = None,
    owners: int = 5,
    customer_ratio: float = 0.5,
    won_ratio: float = 0.3,
    recent_days: int = 30,
    now: datetime | None = None,
) -> SeedData:
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    g = _Gen(seed, now)
    rng = g.rng
    out = SeedData(now=now)
    two_years = 730 * 86400.0
    recent = max(recent_days, 0) * 86400.0
    n_contacts = companies if contacts is None else contacts
    if owners < 1:
        raise ValueError("a Lime Go account has at least one owner (user)")

    # --- reference data (set up two years ago; no random draws, so the rest stays as seeded) ---
    reference_time = g.ago(two_years)
    for _ in range(owners):
        first, last = g.pick(FIRST_NAMES), g.pick(SURNAMES)
        email = f"{first}.{last}@sandlada.se".lower().translate(_ASCII)
        out.owners.append(
            _resource(
                "owners",
                g.uid(),
                {"first_name": first, "last_name": last, "email": email},
                revision=None,
            )
        )
    for pos, (name, category, prob) in enumerate(STAGES, start=1):
        out.stages.append(
            _resource(
                "stages",
                g.uid(),
                {
                    "name": name,
                    "category": category,
                    "position": pos,
                    "probability": prob,
                    "created_at": reference_time,
                    "updated_at": reference_time,
                },
            )
        )
    for key, label, entity, ftype in CUSTOM_FIELDS:
        out.definitions.append(
            _resource(
                "custom-field-definitions",
                g.uid(),
                {
                    "key": key,
                    "label": label,
                    "entity_type": entity,
                    "field_type": ftype,
                    "options": None,
                    "required": False,
                    "archived_at": None,
                    "created_at": reference_time,
                    "updated_at": reference_time,
                },
            )
        )
    owner_refs = [{"type": "owners", "id": o["id"]} for o in out.owners]
    stage_by_cat: dict[str, list[dict[str, Any]]] = {}
    for s in out.stages:
        stage_by_cat.setdefault(s["attributes"]["category"], []).append(s)

    # --- companies ---
    customers: list[int] = []
    others: list[int] = []
    company_slugs: list[str] = []
    for i in range(companies):
        r_country = g.r()
        state: str | None
        phone: str | None
        business_id: str | None
        if r_country < 0.03:  # a Norwegian company
            city, area = g.pick(NORWAY)
            postal = g.digits(4)
            country = g.pick(("Norge", "NO", "Norway"))
            state = None
            phone = f"+47 {area} {g.digits(2)} {g.digits(2)} {g.digits(2)}"
            business_id = g.pick((None, f"{g.digits(3)} {g.digits(3)} {g.digits(3)}"))
        else:
            city, lo_hi, county, area = g.pick(CITIES)
            postal = g.postal_code(lo_hi)
            country = g.sweden()
            state = county if g.r() < 0.3 else None
            phone = g.phone(area) if g.r() < 0.9 else None
            business_id = g.business_id()
        name = g.company_name(city)
        name_slug = slug(name)
        company_slugs.append(name_slug)
        r_email = g.r()
        company_email: str | None
        if r_email < 0.15:
            company_email = None
        elif r_email < 0.16:
            company_email = f"info(at){name_slug}.se"  # a typo Fortnox refuses
        else:
            company_email = f"{g.pick(('info', 'kontakt', 'ekonomi', 'faktura'))}@{name_slug}.se"
        if g.r() < customer_ratio:
            status = "customer"
            customers.append(i)
        else:
            status = g.pick(("lead", "lead", "prospect", "prospect", "churned"))
            others.append(i)
        custom: dict[str, Any] = {}
        if g.r() < 0.7:
            same_city = g.r() < 0.8
            if same_city or country not in (None, "SE", "Sverige", "Sweden"):
                v_city, v_postal = city, postal
            else:
                v_city_t = g.pick(CITIES)
                v_city, v_postal = v_city_t[0], g.postal_code(v_city_t[1])
            custom["visiting_street"] = g.street().replace("Box", "Lagervägen")
            custom["visiting_postal_code"] = v_postal
            custom["visiting_city"] = v_city
            custom["visiting_country"] = country if g.r() < 0.7 else None
        if g.r() < 0.5:
            custom["industry"] = g.pick(BRANCHES)
        created = g.uniform(0, two_years)
        updated = g.uniform(0, created) if g.r() < 0.8 else created
        attrs = {
            "name": name,
            "business_id": business_id,
            "status": status,
            "description": None,
            "domain": f"{name_slug}.se" if company_email else None,
            "industry": None,
            "phone": phone,
            "email": company_email,
            "street": g.street(),
            "postal_code": postal,
            "city": city,
            "state": state,
            "country": country,
            "custom_fields": custom,
            "created_at": g.ago(created),
            "updated_at": g.ago(updated),
        }
        rels = {
            "owner": {"data": owner_refs[g.below(owners)]},
            "tags": {"data": []},
        }
        revision = 1 if updated == created else g.between(2, 9)
        out.companies.append(_resource("companies", g.uid(), attrs, rels, revision))

    # --- contacts: the first `companies` go one to a company, the rest to random ones ---
    contacts_of: dict[int, list[str]] = {}
    for j in range(n_contacts):
        ci = None if not companies else (j if j < companies else g.below(companies))
        first, last = g.pick(FIRST_NAMES), g.pick(SURNAMES)
        domain = company_slugs[ci] if ci is not None else "example"
        created = g.uniform(0, two_years)
        updated = g.uniform(0, created) if g.r() < 0.5 else created
        attrs = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}@{domain}.se".lower().translate(_ASCII)
            if g.r() < 0.85
            else None,
            "phone": g.phone("8") if g.r() < 0.4 else None,
            "mobile_phone": g.mobile() if g.r() < 0.8 else None,
            "job_title": g.pick(JOB_TITLES),
            "department": None,
            "notes": None,
            "status": "active",
            "custom_fields": {},
            "created_at": g.ago(created),
            "updated_at": g.ago(updated),
        }
        company_ref = (
            {"type": "companies", "id": out.companies[ci]["id"]} if ci is not None else None
        )
        cid = g.uid()
        rels = {"company": {"data": company_ref}, "tags": {"data": []}}
        out.contacts.append(_resource("contacts", cid, attrs, rels))
        if ci is not None:
            contacts_of.setdefault(ci, []).append(cid)

    # --- deals ---
    lost_ratio = min(0.15, max(0.0, 1.0 - won_ratio))
    open_stages = stage_by_cat["open"]
    won_stage = stage_by_cat["won"][0]
    lost_stage = stage_by_cat["lost"][0]
    recent_won = 0
    won_total = 0
    for _ in range(deals):
        r = g.r()
        if r < won_ratio:
            stage = won_stage
        elif r < won_ratio + lost_ratio:
            stage = lost_stage
        else:
            stage = g.pick(open_stages)
        ci = None
        if companies:
            pool = customers if (customers and (g.r() < 0.85 or not others)) else others
            ci = g.pick(pool)
        company = out.companies[ci] if ci is not None else None
        short = company["attributes"]["name"] if company else ""
        product = g.pick(PRODUCTS)
        r_name = g.r()
        if r_name < 0.05 and company:
            name = (
                f"{product} inklusive projektledning, dokumentation och två års garanti för {short}"
            )
        elif r_name < 0.06:
            name = f"{product} ✓ klart"
        elif r_name < 0.5:
            name = f"{product} {now.year - g.between(0, 2)}"
        elif r_name < 0.8 and company:
            name = f"{product} – {short}"
        else:
            name = product
        r_value = g.r()
        if r_value < 0.01:
            value = "0.00"
        elif r_value < 0.6:
            value = f"{g.between(5, 2000) * 1000}.00"
        elif r_value < 0.7:
            value = f"{g.between(100, 100000)}.50"
        else:
            cents = g.between(10_000, 50_000_000)
            value = f"{cents // 100}.{cents % 100:02d}"
        r_cur = g.r()
        currency = "SEK" if r_cur < 0.85 else ("EUR" if r_cur < 0.95 else "NOK")
        custom = {}
        if g.r() < 0.4:
            custom["po_number"] = g.pick(
                (f"PO-{now.year}-{g.digits(4)}", f"IO{g.digits(6)}", f"{g.digits(5)}")
            )
        if g.r() < 0.3:
            custom["contract_length"] = g.pick((12, 24, 36))
        if g.r() < 0.2:
            custom["delivery_date"] = (today + timedelta(days=g.between(-200, 120))).isoformat()
        r_desc = g.r()
        if r_desc < 0.5:
            description = None
        elif r_desc < 0.8:
            description = f"Offert skickad till {short or 'kunden'}."
        else:
            description = "Offert skickad.\nUppföljning efter semestern.\n\tPris enligt ramavtal."
        if stage is won_stage:
            won_total += 1
            # A third of the won deals were won recently, so a `start` some days back finds some.
            if recent and g.r() < 1 / 3:
                recent_won += 1
                updated = g.uniform(60, recent - 60) if recent > 120 else g.uniform(0, recent)
                created = g.uniform(updated, two_years)
            else:
                updated = g.uniform(recent + 86400, two_years)
                created = g.uniform(updated, two_years)
        else:
            created = g.uniform(0, two_years)
            updated = g.uniform(0, created)
        close = now - timedelta(seconds=created) + timedelta(days=g.between(14, 120))
        contact_ids = list(contacts_of.get(ci, ())) if ci is not None else []
        if len(contact_ids) > 2:
            contact_ids = rng.sample(contact_ids, 2)
        elif len(contact_ids) == 2 and g.r() < 0.5:
            contact_ids = contact_ids[:1]
        attrs = {
            "name": name,
            "description": description,
            "value": value,
            "currency": currency,
            "probability": stage["attributes"]["probability"],
            "expected_close_date": close.date().isoformat(),
            "custom_fields": custom,
            "created_at": g.ago(created),
            "updated_at": g.ago(updated),
        }
        rels = {
            "company": {"data": {"type": "companies", "id": company["id"]} if company else None},
            "stage": {"data": {"type": "stages", "id": stage["id"]}},
            "contacts": {"data": [{"type": "contacts", "id": c} for c in contact_ids]},
            "owners": {"data": [owner_refs[g.below(owners)]]},
            "tags": {"data": []},
        }
        revision = 1 if updated == created else g.between(2, 9)
        out.deals.append(_resource("deals", g.uid(), attrs, rels, revision))
    return out
