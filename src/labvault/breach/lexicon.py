"""Data of the special-category classifier: LOINC codes, French terms, negation and context words.

Pure data; :mod:`labvault.breach.classify` compiles it at import and checks its consistency.
Category keys are the values of ``classify.SpecialCategory``.

LOINC codes. Every code below was checked, on the date of writing, against a public page naming
it: loinc.org term pages, LOINC summaries republished from the LOINC table (healthassure.in
"LOINC Code NNNN-N" pages, autoicdapi.com, findacode.com), the LOINC forum, or the LOINC mapping
of a laboratory's published test catalogue (ARUP, Labcorp, Mayo Clinic Laboratories and the
hospital catalogues that reprint them). The source is given beside each group. Codes recalled
from memory but not found on such a page were left out (e.g. an RPR code and HBV DNA 29615-2):
a missing code is still caught by the label terms when the label says what the test is.
The short names are ours, abridged from the LOINC long common name.

Terms. French words as they appear in test labels and free-text comments, written with their
accents (normalised with the text: lower case, accents stripped, "β" read as "beta", letters and
digits split: "CA125" -> "ca 125"). A trailing ``*`` matches any ending ("métasta*":
métastase, métastases, métastatique). "test" terms name an analysis, an agent or a drug: their
mere mention reveals that the test was done, so a negation does not cancel them. "condition"
terms state something about the person: "pas de cancer", "patiente non enceinte" cancel them.
"""

from __future__ import annotations

LOINC_SYSTEMS = ("LN", "LOINC", "http://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "2.16.840.1.113883.6.1")

LOINC: dict[str, dict[str, str]] = {
    "hiv": {
        # Cleveland Clinic Laboratories catalogue, test HIV12C (HIV-1 p24 Ag + HIV-1/2 Ab): 56888-1
        "56888-1": "HIV 1+2 Ab + HIV1 p24 Ag, Ser/Plas, immunoassay (4th generation screen)",
        "31201-7": "HIV 1+2 Ab, Ser/Plas, immunoassay",  # loinc.org/31201-7
        "80387-4": "HIV 1+2 Ab, Ser/Plas/Bld, rapid immunoassay",  # loinc.org/80387-4
        "7917-8": "HIV 1 Ab, Ser",  # healthassure.in, LOINC 7917-8
        "44873-8": "HIV 1+2 Ab, Ser, immunoblot (Western blot)",  # healthassure.in, LOINC 44873-8
        "69668-2": "HIV 1 and 2 Ab, differentiation, rapid immunoassay",  # loinc.org/69668-2
        "80203-3": "HIV 1 and 2 Ab identifier, rapid immunoassay (Geenius)",  # loinc.org/80203-3
        "77685-6": "HIV 1 and 2 Ab IgG, line immunoassay (INNO-LIA)",  # loinc.org/77685-6
        "85368-9": "HIV 1+2 RNA presence, Ser/Plas, NAA",  # cdn.loinc.org/85368-9
        "9836-8": "HIV proviral DNA presence, Bld",  # Ethiopia HIV FHIR IG value set (build.fhir.org)
        "89365-1": "HIV 1 and 2 Ab panel, rapid immunoassay",  # idem
        "25836-8": "HIV 1 RNA viral load, NAA",  # Rwanda HIV FHIR IG value set (build.fhir.org)
        "20447-9": "HIV 1 RNA viral load, Ser/Plas, NAA",  # Ohio State labs catalogue IMML66
        "29541-0": "HIV 1 RNA viral load (log), Ser/Plas, NAA",  # idem
        "70241-5": "HIV 1 RNA viral load, NAA",  # University of Kansas catalogue HIVUS
        "68961-2": "HIV 1 Ab, Ser/Plas/Bld",  # Hunterdon Medical Center catalogue HIVB
        "81641-3": "HIV 2 Ab, Ser/Plas/Bld",  # idem
        "58900-2": "HIV 1 and 2 Ag and Ab evaluation",  # idem
    },
    "hepatitis": {
        "5195-3": "Hepatitis B virus surface Ag (HBsAg), Ser",  # loinc.org/5195-3
        "5196-1": "HBsAg, Ser/Plas, immunoassay",  # healthassure.in, LOINC 5196-1
        "75410-1": "HBsAg, Ser/Plas/Bld, rapid immunoassay",  # loinc.org/75410-1
        "47364-5": "HBsAg, donor serum",  # loinc.org/47364-5
        "70154-0": "HBsAg confirmation",  # healthassure.in, LOINC 70154-0
        "16935-9": "Hepatitis B virus surface Ab (anti-HBs)",  # HL7 AU Base IG example observation
        "23869-1": "HBV DNA viral load, Ser, probe",  # healthassure.in, LOINC 23869-1
        "42595-9": "HBV DNA viral load",  # Ohio State labs catalogue IMM160
        "45161-7": "HBV DNA viral load (log)",  # idem
        "16128-1": "Hepatitis C virus Ab (anti-HCV), Ser",  # HL7 CH eKM IG; NRL catalogue
        "13955-0": "Hepatitis C virus Ab, Ser/Plas, immunoassay",  # Billings Clinic catalogue 3979
        "81116-6": "HCV core Ab+Ag, Ser",  # healthassure.in, LOINC 81116-6
        "79189-7": "HCV core Ag, Ser/Plas, immunoassay",  # healthassure.in, LOINC 79189-7
        "11011-4": "HCV RNA viral load, Ser/Plas, NAA",  # Labcorp test 550870 LOINC map
        "38180-6": "HCV RNA viral load (log), Ser/Plas, NAA",  # idem
        "42003-4": "HCV RNA viral load (log), Ser/Plas, bDNA",  # healthassure.in, LOINC 42003-4
        "104714-1": "HCV RNA (log), Ser/Plas, molecular genetics",  # healthassure.in, LOINC 104714-1
    },
    "sti": {
        "21613-5": "Chlamydia trachomatis DNA, NAA",  # UVM catalogue LAB2664; Ohio State LAB1301
        "24111-7": "Neisseria gonorrhoeae DNA, NAA",  # idem
        "64017-7": "C. trachomatis and N. gonorrhoeae panel (order)",  # UVM catalogue LAB2664
        "36903-3": "C. trachomatis and N. gonorrhoeae DNA identifier, NAA",  # loinc.org/36903-3
        "45068-4": "C. trachomatis + N. gonorrhoeae DNA, cervix",  # forum.loinc.org topic 760
        "21190-4": "C. trachomatis DNA, cervix",  # idem
        "21414-8": "N. gonorrhoeae DNA, cervical mucus",  # idem
        "5292-8": "Reagin Ab (VDRL), Ser",  # ARUP test 0093093 components
        "11084-1": "Reagin Ab (VDRL) titre, Ser",  # idem
        "5290-2": "Reagin Ab (VDRL), CSF",  # Mayo test VDSF; Missouri state lab
        "22459-2": "Reagin Ab (VDRL), CSF",  # Labcorp test 006445 LOINC map
        "31146-4": "Reagin Ab (VDRL) titre, CSF",  # Missouri state public health lab, VDRL page
        "47236-5": "Treponema pallidum Ab, immunoassay",  # Labcorp Oklahoma catalogue 5500607
        "71793-4": "T. pallidum Ab titre, Ser/Plas, particle agglutination (TPPA)",  # autoicdapi.com
        "5394-2": "T. pallidum Ab titre, Ser, latex agglutination",  # healthassure.in, LOINC 5394-2
        "50689-9": "T. pallidum Ab, CSF, hemagglutination (TPHA)",  # healthassure.in, LOINC 50689-9
        "17723-8": "T. pallidum Ab, Ser, immobilization",  # healthassure.in, LOINC 17723-8
        "22590-4": "T. pallidum Ab titre, Ser",  # healthassure.in, LOINC 22590-4
        "46206-9": "T. pallidum Ab, donor serum",  # healthassure.in, LOINC 46206-9
    },
    "pregnancy": {
        # hCG is also a germ-cell tumour marker; in a general laboratory it is the pregnancy test.
        "2106-3": "Choriogonadotropin (hCG), urine, presence (pregnancy test)",  # healthassure.in
        "2107-1": "hCG, urine, substance concentration",  # healthassure.in, LOINC 2107-1
        "2112-1": "hCG beta subunit, urine, presence",  # healthassure.in, LOINC 2112-1
        "2118-8": "hCG, Ser/Plas, presence (pregnancy test)",  # healthassure.in, LOINC 2118-8
        "80385-8": "hCG (pregnancy test), Ser, rapid immunoassay",  # loinc.org/80385-8
        "80384-1": "hCG (pregnancy test), urine, rapid immunoassay",  # named on loinc.org/80385-8
        "21198-7": "hCG beta subunit, Ser/Plas, quantitative",  # Billings Clinic 8962; BJH LAB143
        "45194-8": "hCG beta subunit, Ser, quantitative",  # Labcorp test 480038 LOINC map
    },
    "cancer": {
        "2857-1": "Prostate specific Ag (PSA), Ser/Plas",  # Labcorp test 480780 LOINC map
        "10886-0": "PSA free, Ser/Plas",  # idem
        "12841-3": "PSA free/total ratio",  # idem
        "35741-8": "PSA, detection limit <= 0.01 ng/mL",  # healthassure.in, LOINC 35741-8
        "19203-9": "PSA free, substance concentration",  # healthassure.in, LOINC 19203-9
        "83112-3": "PSA total (Mayo method-specific)",  # Mayo test PSAFT
        "83113-1": "PSA free (Mayo method-specific)",  # idem
        "10334-1": "Cancer Ag 125 (CA 125), Ser/Plas",  # Huntsville Hospital C125; Billings 8948
        "83082-8": "CA 125 (Mayo method-specific)",  # Mayo test CA25
        "6875-9": "Cancer Ag 15-3 (CA 15-3), Ser/Plas",  # Mayo test CA153 (EMC, Baystate reprints)
        "83083-6": "CA 15-3 (Mayo method-specific)",  # UVM catalogue CA153
        "24108-3": "Cancer Ag 19-9 (CA 19-9), Ser/Plas",  # Newfoundland lab formulary; Labcorp OK
        "2039-6": "Carcinoembryonic Ag (CEA, French ACE), Ser/Plas",  # healthassure.in, LOINC 2039-6
        "83085-1": "CEA (Mayo method-specific)",  # Mayo test CEA1
        "53962-7": "Alpha-1-fetoprotein, tumour marker, Ser/Plas",  # Labcorp 480012; LOINC forum 688
        "53960-1": "Alpha-1-fetoprotein, tumour marker, moles",  # healthassure.in, LOINC 53960-1
        # AFP without ".tumor marker" is also a second-trimester maternal marker (LOINC forum 688);
        # kept under cancer, the more sensitive reading for a breach notice.
        "1834-1": "Alpha-1-fetoprotein, Ser/Plas",  # Mayo test L3AFP; LOINC forum 688
    },
    "genetic": {
        "29770-5": "Karyotype, Bld/Tiss (chromosome analysis)",  # ARUP test 2002287 components
        "81861-7": "Karyotype, bone marrow",  # healthassure.in, LOINC 81861-7
        "77314-3": "Chromosome analysis associated observations panel",  # hipaaspace.com 77314-3
        "51969-4": "Genetic analysis report",  # healthassure.in, LOINC 51969-4
        "51968-6": "Genetic disease analysis overall interpretation",  # art-decor value set (GTR)
        "69548-6": "Genetic variant assessment",  # autoicdapi.com 69548-6; cismef.org
        "81247-9": "Master HL7 genetic variant reporting panel",  # NW England genomics FHIR IG
    },
    "toxicology": {
        "18282-4": "Cannabinoids, urine, screen",  # UChicago Medicine catalogue UCAN
        "8175-2": "Tetrahydrocannabinol, urine, SAMHSA screen",  # loinc.org/8175-2
        "21556-6": "THC, urine, screen > 20 ng/mL",  # healthassure.in, LOINC 21556-6
        "21557-4": "THC, urine, screen > 100 ng/mL",  # healthassure.in, LOINC 21557-4
        "20413-1": "Cannabinoids, urine, confirmation",  # healthassure.in, LOINC 20413-1
        "19290-6": "Cannabinoids positive, urine, confirmation",  # healthassure.in, LOINC 19290-6
        "19296-3": "Opiates tested for, urine, screen",  # healthassure.in, LOINC 19296-3
        "19297-1": "Opiates tested for, urine, screen (narrative)",  # healthassure.in, LOINC 19297-1
        "19298-9": "Opiates positive, urine, confirmation",  # healthassure.in, LOINC 19298-9
        "95796-9": "Opioids panel, urine, screen",  # healthassure.in, LOINC 95796-9
        "3397-7": "Cocaine, urine, presence",  # healthassure.in, LOINC 3397-7
        "14314-9": "Cocaine and metabolites (benzoylecgonine), urine, screen",  # ARUP test 0090306
        "43984-4": "Benzoylecgonine, urine, screen > 150 ng/mL",  # healthassure.in, LOINC 43984-4
    },
    "psychiatric": {
        "14334-7": "Lithium, Ser/Plas",  # ARUP test 0020038
        "74806-1": "Lithium trough, Ser/Plas",  # findacode.com; healthassure.in, LOINC 74806-1
        "80970-7": "Lithium free, Ser/Plas",  # healthassure.in, LOINC 80970-7
        "13455-1": "Lithium plasma/RBC ratio",  # healthassure.in, LOINC 13455-1
        "6896-5": "Clozapine, Ser/Plas",  # Mayo test CLZ; Michigan Medicine; Northwell
        "10992-6": "Norclozapine, Ser/Plas",  # Mayo test CLZ
        "12375-2": "Clozapine + norclozapine, Ser/Plas",  # idem
        "65632-2": "Clozapine panel (order)",  # idem
    },
}

TEST, CONDITION = "test", "condition"

TERMS: dict[str, dict[str, tuple[str, ...]]] = {
    "hiv": {
        TEST: ("vih", "hiv", "sérologie vih", "charge virale vih", "ag p24", "p24"),
        CONDITION: ("séropositi*", "sida", "antirétrovira*", "prophylaxie pré-exposition"),
    },
    "hepatitis": {
        TEST: ("vhb", "vhc", "vhd", "hbv", "hcv", "ag hbs", "aghbs", "hbsag", "hbs", "hbc", "hbe"),
        CONDITION: ("hépatite*", "sofosbuvir", "velpatasvir", "glécaprévir", "lédipasvir",
                    "entécavir"),
    },
    "sti": {
        TEST: ("chlamydia*", "gonocoque*", "gonorrh*", "neisseria gonorrhoeae", "syphilis", "tpha",
               "vdrl", "tppa", "tréponèm*", "trichomonas", "mycoplasma genitalium"),
        CONDITION: ("ist", "mst", "infection sexuellement transmissible",
                    "infections sexuellement transmissibles", "herpès génital"),
    },
    "pregnancy": {
        TEST: ("hcg", "béta-hcg", "beta hcg", "β-hcg", "bhcg", "b-hcg", "betahcg", "test de grossesse",
               "test grossesse", "dépistage prénatal", "diagnostic prénatal",
               "marqueurs sériques maternels"),
        CONDITION: ("grossesse*", "enceinte", "ivg", "avortement", "fausse couche", "accouchement",
                    "post-partum", "semaines d'aménorrhée"),
    },
    "cancer": {
        TEST: ("psa", "ca 125", "ca 15-3", "ca 19-9", "ca 72-4", "ace", "antigène carcino-embryonnaire",
               "alpha-foetoprotéine", "afp", "marqueur tumoral", "marqueurs tumoraux"),
        CONDITION: ("cancer*", "tumeur*", "tumora*", "métasta*", "chimiothérap*", "chimio",
                    "radiothérap*", "leucémi*", "lymphom*", "myélome*", "sarcome*", "carcinom*",
                    "adénocarcinom*", "néoplas*", "oncolog*", "mélanome*", "hémopathie maligne",
                    "prostatectomie", "mastectomie"),
    },
    "genetic": {
        TEST: ("brca*", "caryotype*", "génétique*", "oncogénétique*", "pharmacogénétique*",
               "séquençage", "variant pathogène", "variants pathogènes", "mutation*",
               "facteur v leiden"),
        CONDITION: ("trisomie*",),
    },
    "toxicology": {
        TEST: ("cannabis", "cannabinoïde*", "thc", "opiacé*", "opioïde*", "cocaïne", "benzoylecgonine",
               "amphétamine*", "méthamphétamine*", "mdma", "ecstasy", "héroïne", "méthadone",
               "buprénorphine", "toxiques", "toxicolog*", "stupéfiant*"),
        CONDITION: ("toxicoman*", "addict*", "csapa", "drogue*", "alcoolisme", "alcoolodépendan*"),
    },
    "psychiatric": {
        TEST: ("lithium", "lithémie", "clozapine", "norclozapine", "neuroleptique*", "antipsychotique*",
               "antidépresseur*", "sertraline", "fluoxétine", "paroxétine", "citalopram",
               "escitalopram", "venlafaxine", "olanzapine", "rispéridone", "aripiprazole",
               "halopéridol", "quétiapine"),
        CONDITION: ("psychiatr*", "pédopsychiatr*", "centre médico-psychologique", "bipolaire*",
                    "schizophr*", "psychose*", "psychotique*", "dépressi*", "anorexie mentale",
                    "suicid*", "soins sans consentement"),
    },
}

# A term is dropped when one of these occurs within UNLESS_WINDOW words of it (either side).
UNLESS_WINDOW = 8
UNLESS: dict[str, tuple[str, ...]] = {
    # French "ACE" is carcino-embryonic antigen; "ECA"/"ACE" also names angiotensin converting enzyme.
    "ace": ("enzyme*", "conversion", "angiotensin*", "eca"),
    "lithium": ("hépar*",),  # lithium heparin tubes
    "enceinte": ("l'enceinte", "une enceinte", "enceinte réfrigérée", "enceinte thermostatée",
                 "enceinte climatique"),
    "dépressi*": ("médullaire", "respiratoire", "myocard*"),
    "séropositi*": ("toxoplasm*", "rubéole", "cmv", "cytomégalovirus", "ebv", "varicelle",
                    "hépatite*", "vhc", "vhb", "syphilis"),
    "mutation*": ("vih", "hiv", "vhb", "vhc", "résistance"),  # viral resistance genotyping
}

# Negation of condition terms (see classify.py): a cue among the NEGATION_BEFORE_WINDOW words
# before the term, or among the NEGATION_AFTER_WINDOW words after it, within the same clause.
NEGATION_BEFORE = ("pas", "non", "sans", "ni", "aucun", "aucune", "absence", "jamais")
NEGATION_AFTER = ("négatif", "négative", "négatifs", "négatives", "exclu", "exclue", "exclus",
                  "exclues", "absent", "absente", "absents", "absentes", "écarté", "écartée")
NEGATION_BEFORE_WINDOW = 4
NEGATION_AFTER_WINDOW = 2
CLAUSE_BREAKS = ("mais", "cependant", "toutefois", "sauf")

# A valid NIR counts only with one of these within NIR_CONTEXT_WORDS words before or after it.
NIR_CONTEXT = ("nir", "ins", "n° sécu", "no sécu", "numéro de sécu", "sécu", "sécurité sociale",
               "immatriculation", "carte vitale", "matricule", "n° ss", "no ss")
NIR_CONTEXT_WORDS = 6
