"""French wording of the regulator's documents: data categories, vectors, bases, consequences,
proposed measures and the legal references.

Pure data, kept apart from the builders so that a jurist can review every sentence the CNIL and
the regional health agency will read in one place. Codes (the keys) are what the JSON documents
and the register carry; the labels are what the printable documents show.
"""

from __future__ import annotations

# Data categories of a scope document, in the order the documents list them.
CATEGORIES: dict[str, str] = {
    "identity": "Identité (nom, prénoms, date de naissance, sexe)",
    "contact": "Coordonnées (adresse postale, téléphone, adresse électronique)",
    "nir": "Numéro d'inscription au répertoire (NIR) et identifiant national de santé (INS)",
    "insurance": "Couverture sociale (régime, organisme d'assurance maladie, complémentaire)",
    "prescriber": "Médecin prescripteur",
    "orders": "Demandes d'examens (examens prescrits, dates de prélèvement)",
    "results": "Résultats d'examens de biologie médicale",
    "comments": "Commentaires et conclusions du biologiste (texte libre)",
    "attachments": "Comptes rendus joints",
    "membership": "Qualité de patient du laboratoire (réponse à une recherche)",
}

# Special categories of health data (art. 9 RGPD) whose exposure makes a notice urgent.
SPECIAL: dict[str, str] = {
    "hiv": "VIH",
    "hepatitis": "Hépatites virales",
    "sti": "Infections sexuellement transmissibles (hors VIH)",
    "pregnancy": "Grossesse et interruption de grossesse",
    "cancer": "Cancer",
    "genetic": "Génétique",
    "toxicology": "Toxicologie, addictions",
    "psychiatric": "Psychiatrie",
}

RECORDS: dict[str, str] = {
    "results": "Résultats d'examens",
    "comments": "Commentaires",
    "unclassified": "dont enregistrés avant le classement des catégories particulières "
                    "(catégories non déterminées)",
}

EXPOSURES: dict[str, str] = {
    "decrypted": "lues en clair (déchiffrées)",
    "sealed": "restées chiffrées, clé non compromise",
}

VECTORS: dict[str, str] = {
    "stolen-credentials": "Utilisation d'identifiants volés d'un membre du personnel",
    "leaked-token": "Jeton d'accès d'une application divulgué",
    "insider": "Accès illégitime par une personne habilitée",
    "lost-backup": "Perte ou vol d'une sauvegarde",
    "exposed-staging": "Exposition d'une zone de transit de migration",
    "compromised-key": "Compromission d'une clé de chiffrement",
    "malware": "Logiciel malveillant",
    "misconfiguration": "Erreur de configuration",
    "other": "Autre",
}

BASES: dict[str, str] = {
    "audit": "Accès enregistrés dans le journal d'audit (lectures par un compte ou un jeton)",
    "key": "Clé maîtresse compromise : dossiers entiers déchiffrables",
    "staging": "Zone de transit d'une migration : dossiers importés par elle",
}

# Likely consequences (art. 33(3)(c)); which decrypted categories bring each is in the builder.
CONSEQUENCES: dict[str, str] = {
    "identity-fraud": "Usurpation d'identité et fraude, notamment aux prestations de "
                      "l'assurance maladie",
    "phishing": "Hameçonnage ciblé (courriels, SMS ou appels se réclamant du laboratoire ou de "
                "l'assurance maladie) et escroqueries",
    "health-disclosure": "Atteinte à la vie privée et au secret médical : révélation "
                         "d'informations sur l'état de santé",
    "special-disclosure": "Discrimination, atteinte à la réputation, détresse psychologique : "
                          "révélation de données de santé particulièrement sensibles",
    "membership-disclosure": "Révélation du fait d'être patient du laboratoire",
    "sealed-only": "Aucune conséquence probable tant que les clés restent protégées : les "
                   "données emportées sont restées chiffrées (AES-256-GCM, une clé par patient)",
}

# Measures taken, as labvault's own records state them.
MEASURES: dict[str, str] = {
    "account-locked": "Compte verrouillé par la réponse automatique de la surveillance "
                      "(sessions et jetons révoqués)",
    "token-revoked": "Jeton d'accès révoqué",
    "step-up": "Nouvelle preuve du second facteur exigée pour le compte",
    "account-disabled": "Compte désactivé (sessions et jetons révoqués)",
    "mfa-reset": "Second facteur du compte réinitialisé",
    "stated": "Mesure déclarée par le responsable de traitement",
}

# Measures proposed by vector (art. 33(3)(d)); the DPO edits the draft before sending it.
PROPOSED: dict[str, tuple[str, ...]] = {
    "stolen-credentials": (
        "Ré-enrôler le compte concerné (mot de passe et second facteur), approuvé par une "
        "seconde personne",
        "Rechercher dans le journal d'audit toute autre activité depuis la même source",
        "Rappeler au personnel les règles de protection des identifiants"),
    "leaked-token": (
        "Réémettre le jeton avec les seules portées nécessaires",
        "Retirer le jeton de l'emplacement où il a été divulgué"),
    "insider": (
        "Suspendre le compte pendant l'enquête interne",
        "Rappeler le secret professionnel et engager la procédure disciplinaire prévue"),
    "lost-backup": (
        "Vérifier que la clé maîtresse n'accompagnait pas la sauvegarde",
        "Procéder à la rotation de la clé maîtresse"),
    "exposed-staging": (
        "Effacer la zone de transit et détruire sa clé",
        "Supprimer les fichiers d'export d'origine laissés par l'ancien système"),
    "compromised-key": (
        "Procéder à la rotation de la clé maîtresse et établir comment elle a été obtenue",),
    "malware": (
        "Isoler les postes et serveurs atteints et restaurer depuis une sauvegarde saine",
        "Demander l'assistance du CERT Santé"),
    "misconfiguration": (
        "Corriger la configuration et contrôler les autres environnements",),
    "other": (),
}
PROPOSED_NOTICE = "Informer sans tarder les personnes concernées (art. 34 RGPD)"
PROPOSED_PHISHING = "Avertir les patients concernés du risque d'hameçonnage"

RISKS: dict[str, str] = {
    "high": "Risque élevé pour les droits et libertés des personnes",
    "risk": "Risque pour les droits et libertés des personnes",
    "unlikely": "Risque peu probable",
    "unknown": "Risque non encore évalué : périmètre non établi",
}

# Reasons a recipient was not notified (fixed codes: no free text reaches the audit log).
NOT_NOTIFIED: dict[str, dict[str, str]] = {
    "cnil": {
        "unlikely-risk": "Violation peu susceptible d'engendrer un risque (art. 33(1) RGPD)",
        "sealed-only": "Données restées chiffrées, clés non compromises : risque peu probable "
                       "(art. 33(1) RGPD)",
        "not-a-breach": "Après analyse, pas de violation de données à caractère personnel",
    },
    "people": {
        "no-high-risk": "Pas de risque élevé pour les personnes (art. 34(1) RGPD)",
        "sealed-only": "Données incompréhensibles pour qui n'est pas autorisé : chiffrées, clés "
                       "non compromises (art. 34(3)(a) RGPD)",
        "measures-since": "Mesures ultérieures : le risque élevé n'est plus susceptible de se "
                          "matérialiser (art. 34(3)(b) RGPD)",
        "public-communication": "Efforts disproportionnés : communication publique à la place "
                                "(art. 34(3)(c) RGPD)",
        "not-a-breach": "Après analyse, pas de violation de données à caractère personnel",
    },
    "ars": {
        "not-serious": "Incident non significatif ni grave au sens de l'article D. 1111-16-2 "
                       "du code de la santé publique",
        "not-a-breach": "Après analyse, pas d'incident de sécurité du système d'information",
    },
}
RECIPIENTS: dict[str, str] = {
    "cnil": "CNIL (art. 33 RGPD)",
    "ars": "Agence régionale de santé et CERT Santé (art. L. 1111-8-2 CSP)",
    "people": "Personnes concernées (art. 34 RGPD)",
}

# The criteria of a serious incident (CSP art. D. 1111-16-2, II), in the decree's order.
ARS_CRITERIA: dict[str, str] = {
    "care-safety": "Conséquences potentielles ou avérées sur la sécurité des soins",
    "health-data": "Conséquences sur la confidentialité ou l'intégrité des données de santé",
    "operations": "Atteinte au fonctionnement normal de la structure",
    "health-system": "Retentissement potentiel ou avéré sur l'organisation départementale, "
                     "régionale ou nationale du système de santé",
    "others": "Incident susceptible de toucher d'autres établissements, organismes ou services",
}

CNIL_REFERENCES = (
    "Règlement (UE) 2016/679 (RGPD), article 33 : notification à l'autorité de contrôle",
    "RGPD, article 34 : communication à la personne concernée",
    "RGPD, article 33(5) : documentation interne de toute violation",
)
ARS_REFERENCES = (
    "Code de la santé publique, article L. 1111-8-2 : signalement sans délai des incidents "
    "significatifs ou graves de sécurité des systèmes d'information",
    "Code de la santé publique, articles D. 1111-16-2 et suivants : incidents concernés et "
    "traitement des signalements",
    "Arrêté du 30 octobre 2017 : formulaire de déclaration sur le portail de signalement des "
    "événements sanitaires indésirables",
)
ARS_PORTAL = "https://signalement.social-sante.gouv.fr"
