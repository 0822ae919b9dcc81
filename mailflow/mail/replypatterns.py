"""The words mail clients write around a quote, in the committee's languages.

Data for :mod:`mailflow.mail.quotes`: attribution lines ("On ... wrote:"), Outlook and
Exchange header blocks, "Original Message" and forwarded-message markers, and mobile
signatures, in English, German, French, Spanish, Italian, Portuguese and Dutch (and,
where they cost nothing, Danish, Norwegian, Swedish and Polish).  The shapes follow the
fixtures of mailgun/talon, discourse/email_reply_trimmer and github/email_reply_parser,
and the replies in ``tests/fixtures/replies/``.  Every pattern is anchored and matched on one
bounded line, so none can be made to backtrack for long.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE

# Words an attribution starts with; a line starting otherwise must carry an address
# ("Name <a@b> wrote:", "Name <a@b> schrieb am ...:") or end where one was wrapped.
ATTRIBUTION_STARTS = frozenset({"on", "at", "am", "le", "el", "il", "em", "no", "op", "den",
                                "dnia", "w"})
_ANY = r".{1,300}?"
_OPT = r".{0,300}?"
ATTRIBUTION = re.compile(
    r"^[\s>*-]*(?:"
    rf"(?:On|At)\s{_ANY}\s(?:wrote|writes|said)"                     # English
    rf"|{_ANY}\s(?:wrote|writes)(?:\s(?:on|at)\s{_ANY})?"            # Name <a@b> wrote (on ...)
    rf"|Am\s{_ANY}\s(?:schrieb|geschrieben){_OPT}"                  # German
    rf"|{_ANY}\sschrieb(?:\s(?:am|um)\s{_ANY})?"                     # German, Gmail and K-9
    rf"|Le\s{_ANY}\sa\s+écrit"                                       # French
    rf"|{_ANY}\sa\s+écrit(?:\sle\s{_ANY})?"
    rf"|El\s{_ANY}\sescribi[óo]"                                     # Spanish
    rf"|{_ANY}\sescribi[óo]"
    rf"|Il\s{_ANY}\sha\s+scritto"                                    # Italian
    rf"|{_ANY}\sha\s+scritto"
    rf"|(?:Em|No\s+dia)\s{_ANY}\sescreveu"                           # Portuguese
    rf"|{_ANY}\sescreveu"
    rf"|Op\s{_ANY}\s(?:schreef|het\s+volgende\s+geschreven){_OPT}"  # Dutch
    rf"|{_ANY}\sschreef"
    rf"|(?:Den\s)?{_ANY}\sskrev{_OPT}"                               # Danish, Norwegian, Swedish
    rf"|(?:Dnia|W\sdniu)\s{_ANY}\snapisał(?:\(a\))?"                  # Polish
    r")\s*:[\s*-]*$", _I)
TIME = re.compile(r"\b\d{1,2}[:.h]\d{2}\b")

FROM_HEADER = re.compile(
    r"^\*?(?:From|Von|De|Da|Van|Fra|Från|Od|Expéditeur|Remetente|Mittente|Afzender)"
    r"\s*\*?\s*:\s*\*?\s*\S", _I)
OTHER_HEADER = re.compile(
    r"^\*?(?:Sent|Date|To|Cc|Bcc|Subject|Reply-To|Importance|Attachments"   # English
    r"|Gesendet|Datum|An|Betreff|Antwort an|Kopie"                           # German
    r"|Envoyé|Date d'envoi|À|Objet|Répondre à"                               # French
    r"|Enviado(?: el)?|Fecha|Para|Asunto|CCO|Responder a"                    # Spanish
    r"|Inviato|Data|A|Oggetto|Rispondi a|Ccn"                                # Italian
    r"|Enviada em|Enviado em|Assunto"                                        # Portuguese
    r"|Verzonden|Aan|Onderwerp|Beantwoorden - Aan"                           # Dutch
    r"|Sendt|Til|Emne|Skickat|Till|Ämne|Wysłano|Do|Temat|DW)"                # Nordic, Polish
    r"\s*\*?\s*:\*?(?:\s|$)", _I)

ORIGINAL_MESSAGE = re.compile(
    r"^[\s*]*-{2,}\s*(?:Original Message|Reply Message|Ursprüngliche Nachricht|"
    r"Originalnachricht|Message d'origine|Message original|Mensaje original|"
    r"Messaggio originale|Mensagem original|Oorspronkelijk bericht|Origineel bericht|"
    r"Originalmeddelande|Oprindelig meddelelse|Opprinnelig melding|Wiadomość oryginalna)"
    r"\s*-{2,}[\s*]*$", _I)
FORWARDED = re.compile(
    r"^[\s*]*(?:-{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado|Messaggio inoltrato|Mensagem encaminhada|Doorgestuurd bericht|"
    r"Videresendt (?:melding|meddelelse)|Vidarebefordrat meddelande)\s*-{2,}"
    r"|(?:Begin forwarded message|Anfang der weitergeleiteten (?:E-Mail|Nachricht)|"
    r"Début du message réexpédié|Inicio del mensaje reenviado|Inizio messaggio inoltrato|"
    r"Início da mensagem reencaminhada|Begin doorgestuurd bericht)\s*:)[\s*]*$", _I)
UNDERSCORE_RULE = re.compile(r"^_{20,}$")

MOBILE_SIGNATURE = re.compile(
    r"^[(<]*(?:"
    r"Sent\s(?:from|with|via|using|by)\s.{1,100}"                   # English
    r"|Get\sOutlook\sfor\s\S.{0,30}"
    r"|Von\smeinem\s.{1,60}\sgesendet.{0,60}"                       # German
    r"|Gesendet\s(?:von|vom|mit)\s.{1,80}"
    r"|Diese\sNachricht\swurde\svon\s.{1,80}\sgesendet.{0,80}"
    r"|Envoyé\s(?:de|depuis|à\spartir\sd[eu])\s.{1,80}"            # French
    r"|Obtenir\sOutlook\spour\s\S.{0,30}"
    r"|Enviado\s(?:desde|do|de|a\spartir\sdo)\s.{1,80}"             # Spanish, Portuguese
    r"|Obtener\sOutlook\spara\s\S.{0,30}"
    r"|Obter\so\sOutlook\spara\s\S.{0,30}"
    r"|Inviato\s(?:da|dal|dalla|con)\s.{1,80}"                      # Italian
    r"|Scarica\sOutlook\sper\s\S.{0,30}"
    r"|(?:Verzonden|Verstuurd)\s(?:met|vanaf|van|via)\s.{1,80}"     # Dutch
    r"|Outlook\svoor\s\S.{1,30}\sdownloaden"
    r")[)>]*$", _I)


def could_attribute(line: str) -> bool:
    """Cheap first test before :data:`ATTRIBUTION`: the first word, or an address."""
    word = line.lstrip(" >*-").split(" ", 1)[0].lower()
    return (word in ATTRIBUTION_STARTS or "@" in line or line.endswith("<")
            or line.endswith("(<"))


def join_wrapped(joined: str, part: str) -> str:
    """Two lines of a wrapped attribution as one ("Name <" + "a@b> wrote:" has no space)."""
    if not joined:
        return part
    return joined + part if joined.endswith(("<", "(")) else joined + " " + part
