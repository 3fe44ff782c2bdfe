# ruff: noqa: RUF001  (phrase lists in other scripts: look-alike letters are the point)
"""The phrase indicators: literal anchors and the bounded patterns that confirm them.

Every pattern runs on the scanner's normalised view (lower case, invisible characters removed,
look-alike letters folded) and only inside a bounded window around an anchor the literal matcher
found, so no pattern ever sees more than ``back + ahead`` characters. Patterns are written
without nested unbounded quantifiers: word and separator classes are disjoint, gaps are bounded
(``{0,n}``), so even a crafted window is matched in time linear in its length.

Weights are the indicator's strength alone, in [0, 1]; the scanner combines them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ANCHOR_RULES", "COMPACT_PHRASES", "FAMILIES", "LEET", "LEET_ANCHORS", "SUBSTITUTION",
           "PhraseRule"]

# The indicator of a word the model is told to replace with a secret; its rules capture the word.
SUBSTITUTION = "exfil-substitution"

# Indicator families (the ``family`` of every piece of evidence).
FAMILIES = ("override", "role", "directive", "exfiltration", "hidden", "encoded", "delimiter")


@dataclass(eq=False, slots=True)
class PhraseRule:
    """One phrase indicator: a pattern confirmed in a bounded window around an anchor."""

    indicator: str
    family: str
    weight: float
    pattern: str
    back: int = 0
    ahead: int = 200
    lang: str = "en"
    _compiled: re.Pattern[str] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        # Compiled on first use: a hundred large patterns would otherwise cost instrument()
        # a few hundred milliseconds, most of them for rules a given agent never triggers.
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self.pattern)
        return compiled


_SEP = r"[\W_]+"  # separators: anything that is not a letter or digit
_WORD = r"[^\W_]+"  # a word: letters and digits only (disjoint from _SEP)


# Separators inside a sentence: a gap never crosses ".", "!", "?", ";" or a line break, so words
# of two different sentences do not make a phrase.
_GSEP = r"[^\w.!?;\n]{1,8}|_"


def _gap(n: int) -> str:
    """Up to ``n`` whole words between two parts of a phrase (lazy, bounded).

    Each word is an atomic group: what follows a word (a separator) never starts with a letter
    or digit, so giving back some of a word's letters can never lead to a match; the atomic
    group spares the engine those attempts (the same matches, ~13 % less time on phrase checks).
    """
    return rf"(?:(?>{_WORD})(?:{_GSEP})){{0,{n}}}?"


def _alt(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# -- English -------------------------------------------------------------------------------------

_OVERRIDE_VERBS = _alt(
    "ignore", "ignoring", "disregard", "disregarding", "forget", "skip", "override", "overrule",
    "bypass", "discard", "abandon", "neglect", r"pay no attention to", r"do not follow",
    r"don\W?t follow", r"stop following", r"no longer follow", r"set aside", r"put aside",
    r"throw away", "nullify", "supersede", "circumvent", r"do not obey", r"don\W?t obey",
)
_QUALIFIERS = _alt(
    "previous", "previously", "prior", "above", "earlier", "preceding", "foregoing", "former",
    "original", "initial", "old", "existing", "all", "any", "every", "your", "system",
    "developer", "default", "safety",
)
_TARGETS = _alt(
    r"instructions?", r"instruction set", r"directions?", r"directives?", r"rules?",
    r"guidelines?", "guidance", r"prompts?", r"commands?", r"orders?", "context",
    r"constraints?", r"restrictions?", r"guardrails?", "policies", "policy", "programming",
    "training", r"messages?", r"safeguards?", r"filters?", r"limitations?", "boundaries",
    "ethics", "principles", r"system prompt",
)
_SENSITIVE_DATA = _alt(
    "conversation", r"conversations", r"chat(?: history| log| logs)?", "history", "transcript",
    "context", r"system prompt", "prompt", r"credentials?", r"passwords?", "passwd",
    r"api[\W_]?keys?", r"access keys?", r"private keys?", r"ssh keys?", r"secret keys?",
    r"secrets", r"(?:access|api|auth|session|bearer|refresh|github|slack|oauth|aws) tokens?",
    r"env(?:ironment)? (?:variables|vars)", r"cookies?",
    r"session(?: ids?| tokens?)?", "memory", r"card numbers?", r"credit cards?",
    r"personal (?:data|information|details)", "pii", r"(?:customer|user|client)s?\W+(?:data|records|"
    r"list|details|emails|information|database|table)", r"all (?:the )?(?:data|records|emails|"
    r"files|documents|messages|contacts)", "database", r"\.env", r"id_rsa",
    # Well-known places of secrets, written as paths ("the contents of ~/.ssh/id_rsa").
    r"\.ssh\b(?:/id_\w{1,16})?", r"\.aws/credentials", r"/etc/(?:passwd|shadow)",
    r"\.(?:netrc|npmrc|pypirc|git-credentials)",
    # Logins and card codes ("email their bank login to ...", "the card number and CVC").
    r"(?:bank(?:ing)?|online banking|account) (?:log-?ins?|credentials|passwords?|pins?)",
    r"log-?in (?:details|credentials|info(?:rmation)?)", r"cvcs?", r"cvvs?",
)
_GENERIC_DATA = _alt(
    "data", r"records?", r"files?", r"documents?", "details", "information", "info",
    r"contents?", r"results?", r"emails?", r"logs?", "notes", "everything", r"summary",
    "output", r"answers?", "response", r"threads?", r"invoices?", r"messages?", r"contacts?",
    r"reports?", r"attachments?", r"orders?", r"tickets?", r"calendars?", "inbox", "mailbox",
    "schedule", r"payslips?", r"statements?", r"photos?",
    # A file named with a data format's extension ("forward the attached budget.xlsx to ...").
    r"[\w-]{1,64}\.(?:xlsx?|csv|pdf|docx?|pptx?|zip|json|sql|db|bak|tar|gz|txt|key|pem)",
)
_SEND_VERBS = _alt(
    "send", "forward", "email", "e-mail", "mail", "post", "upload", "transfer", "exfiltrate",
    "leak", "transmit", "deliver", "relay", "dump", "export", "submit", "share", "copy",
    "report", "sync", "push", "beam", "pipe",
)
_EMAIL = r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"
_URL = r"(?:https?|ftp|wss?)://[^\s]{1,200}"
_HOSTLIKE = r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,6}\.(?:com|net|org|io|xyz|ru|cn|top|site|" \
            r"info|biz|me|co|app|dev|link|click|tk|ml|ga|cf|gq|cc|ws|pw|online|live|shop)\b"
_DESTINATION = _alt(
    _EMAIL, _URL, _HOSTLIKE,
    r"(?:this|that|the following|the below|the given|my|our|an external|the external|"
    r"the attacker\W?s?|the) (?:e-?mail )?(?:address|url|endpoint|server|webhook|link|inbox|"
    r"domain|site|host|ip|bucket|channel)",
    r"(?:the )?attacker", r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
)
# "with": "share the calendar with x@...". The destination that must follow is an address.
_TO = _alt("to", "into", "at", "via", "on", "towards", "onto", "with")
_AI = _alt(
    "ai", r"a\.i\.", "assistant", "llm", r"language model", "agent", r"ai agent", "chatbot",
    "bot", "model", "gpt", "chatgpt", "claude", "gemini", "copilot", "llama", r"ai assistant",
    r"ai system", r"ai model", r"automated system", r"summari[sz]er",
)
_TOOLISH = _alt("tool", "function", "plugin", "action", "api", "endpoint", "command", "skill")

_EN: list[tuple[tuple[str, ...], PhraseRule]] = []


def _en(anchors: tuple[str, ...], indicator: str, family: str, weight: float, pattern: str, *,
        back: int = 0, ahead: int = 200) -> None:
    _EN.append((anchors, PhraseRule(indicator, family, weight, pattern, back, ahead, "en")))


_OVERRIDE_ANCHORS = (
    "ignore", "disregard", "forget", "skip", "override", "overrule", "bypass", "discard",
    "abandon", "neglect", "pay no attention", "do not follow", "don't follow", "dont follow",
    "stop following", "no longer follow", "set aside", "put aside", "throw away", "nullify",
    "supersede", "circumvent", "do not obey", "don't obey",
)
# The writer withdrawing instructions of their own on one matter ("please disregard my previous
# instructions about the shipment") speaks to a person, not to the model: not this indicator.
_OWN_SCOPED = (rf"(?!{_OVERRIDE_VERBS}{_SEP}(?:my|our){_SEP}{_gap(2)}{_TARGETS}{_SEP}"
               r"(?:about|regarding|concerning|re|on|for)\b)")
# Not a verb where a key is given a value or a comment starts ("ignore = []  # Allow fix for all
# enabled rules" in a configuration file).
_NOT_KEY = r"(?![^\w\n]{0,3}[=#])"
_en(_OVERRIDE_ANCHORS, "override-instructions", "override", 0.8,
    rf"{_OWN_SCOPED}{_OVERRIDE_VERBS}{_NOT_KEY}{_SEP}{_gap(3)}{_QUALIFIERS}{_SEP}{_gap(2)}"
    rf"{_TARGETS}\b")
_en(_OVERRIDE_ANCHORS, "override-instructions-weak", "override", 0.4,
    rf"{_OVERRIDE_VERBS}{_NOT_KEY}{_SEP}{_gap(1)}{_TARGETS}\b")
_en(("forget",), "override-forget-everything", "override", 0.7,
    rf"forget{_SEP}(?:about{_SEP})?(?:everything|all|anything|what){_SEP}{_gap(2)}"
    r"(?:above|before|prior|previously|earlier|so far|until now|you (?:were|have been|\W?ve been)"
    r" told|i (?:said|told you)|you know|you (?:were|have been) (?:given|instructed))")
_NEW_ADJ = ("new", "updated", "revised", "real", "actual", "true", "secret", "hidden", "important",
            "urgent", "priority", "override", "additional")
_en(tuple(f"{adj} {noun}" for adj in _NEW_ADJ for noun in ("instruction", "directive", "order",
                                                          "rules", "task", "objective", "mission",
                                                          "system")),
    "override-new-instructions", "override", 0.6,
    r"(?:new|updated|revised|real|actual|true|secret|hidden|important|urgent|priority|override|"
    r"additional)\W{1,3}(?:system\W{1,3})?(?:instructions?|directives?|orders?|rules|task|"
    r"objective|mission)\b\W{0,3}(?::|-{1,3}|are as follows|follow\b|take precedence|"
    r"supersede|override|replace)")
_en(tuple(f"your {adj}" for adj in ("new", "real", "true", "actual", "only", "primary", "updated",
                                    "revised", "next")), "override-new-task", "override", 0.6,
    r"your\W{1,3}(?:new|real|true|actual|only|primary|updated|revised|next)\W{1,3}(?:task|goal|"
    r"objective|role|purpose|job|mission|instructions?|directive|orders?|priority)\W{1,3}"
    r"(?:is|are|will be|:|now)")
_en(("from now on", "from this point", "from here on", "starting now", "henceforth",
     "for the rest of this conversation"),
    "override-from-now-on", "override", 0.25,
    rf"(?:from now on|from this point(?: on| forward)?|from here on(?: out)?|starting now|"
    rf"henceforth|for the rest of this conversation){_SEP}{_gap(2)}(?:you|your|ai|assistant|"
    r"respond|answer|reply|only|always|never|act|behave|ignore|obey)\b")
_en(tuple(f"{verb} {what}" for verb in ("stop", "cease", "halt", "abort")
          for what in ("what", "your", "everything", "all")), "override-redirect", "override", 0.45,
    r"(?:stop|cease|halt|abort)\W{1,3}(?:what you\W?(?:re| are) doing|your (?:current )?(?:task|"
    r"work|summary|instructions)|everything|all (?:tasks|other tasks))\b")
# The user's (or an owner's) consent claimed for what the text asks: "the account owner has
# pre-authorised a wire", "the user has approved you to...". Strong when it authorises the model;
# weak otherwise, since "the customer has approved the quote" is ordinary business mail.
_AUTHORITY = (r"(?:the|your)\W{1,3}(?:account\W{1,3}|card\W{1,3})?(?:user|owner|holder|admin|"
              r"administrator|customer)\W{1,3}(?:has|have|already)\W{1,3}(?:already\W{1,3})?"
              r"(?:pre-?)?(?:authori[sz]ed|approved|allowed|permitted|granted|consented|agreed|"
              r"confirmed)\b")
_AUTHORITY_ANCHORS = ("the user has", "the user already", "owner has", "holder has",
                      "the admin has", "the customer has", "administrator has")
_en(_AUTHORITY_ANCHORS, "role-false-authority", "role", 0.5,
    _AUTHORITY + r"\W{1,3}(?:you|the (?:assistant|ai|agent|model|bot))\b", back=24)
_en(_AUTHORITY_ANCHORS, "role-false-authority", "role", 0.3, _AUTHORITY, back=24)
# Speaking for the user ("the user wants you to send..."): how a text addressed to the model
# claims the user's authority. "The customer wants you to call back" is a ticket for a person.
_en(("the user has", "the user wants", "the user would", "the user expects", "the user needs"),
    "role-false-authority", "role", 0.45,
    r"the user (?:has (?:already )?(?:asked|requested|instructed|told|asked for)|wants|would like|"
    r"expects|needs)\W{1,3}(?:that )?you\b")
_en(("you are authorised", "you are authorized", "you have been authorised",
     "you have been authorized", "you are allowed", "you are permitted", "you have permission",
     "you have been granted"), "role-false-authority", "role", 0.45,
    r"you (?:are|have been|have) (?:now )?(?:authori[sz]ed|allowed|permitted|granted|"
    r"permission)\b[^.\n]{0,12}\bto\b")
_en((*(f"{neg} ask" for neg in ("do not", "don't", "dont", "never", "without")),
     "without asking", "without confirmation", "without approval"),
    "override-no-confirmation", "override", 0.45,
    r"(?:(?:do not|don\W?t|dont|never) ask(?: the user| anyone)? (?:for|about)|without (?:asking"
    r"(?: the user)?(?: for)?|any)?\W{0,3}) ?(?:confirmation|permission|approval|consent)\b")
_en(tuple(f"{neg} {verb}" for neg in ("do not", "don't", "dont", "never")
          for verb in ("mention", "reveal", "disclose", "talk about", "tell anyone")),
    "override-conceal", "override", 0.5,
    r"(?:do not|don\W?t|dont|never) (?:mention|reveal|disclose|talk about|tell anyone about) "
    r"(?:(?:the|this|that|these|any|your) (?:change|changes|instructions?|note|update|"
    r"modification|request|step|message)|this|it)\b")
_en(tuple(f"{verb} {scope}" for verb in ("forward", "send", "copy", "cc", "bcc", "email", "post",
                                         "upload", "mirror")
          for scope in ("every", "all", "each", "any")),
    # One directive alone never flags: an accounts-payable policy says "forward every invoice
    # that you receive to procurement" too. Addressed to the model, or with a destination, it does.
    "directive-standing-order", "directive", 0.45,
    r"(?:forward|send|copy|cc|bcc|email|post|upload|mirror)\W{1,3}(?:every|all|each|any)\W{1,3}"
    r"[\w -]{1,40}?\W{1,3}(?:that )?you (?:process|receive|see|read|handle|get|find|"
    r"summari[sz]e|answer|review)\b")
_en(("@agent", "@assistant", "@ai ", "@ai:", "@bot", "@llm", "@copilot", "@claude", "@chatgpt",
     "@gpt"), "address-ai", "role", 0.45, r"@(?:agent|assistant|ai|bot|llm|copilot|claude|"
    r"chatgpt|gpt)\b")
_en(("[assistant", "[ai ", "[ai:", "[llm", "[agent", "<assistant", "<ai ", "<agent", "[admin ",
     "[note to", "[instructions", "[system ", "<system ", "[developer ", "(system:",
     "(assistant:", "[ai]"), "delimiter-role-tag", "delimiter", 0.5,
    # What may follow the role inside the tag: a kind of message, not a name ("[Agent Platform]",
    # "[Developer Interface]" are link texts and headings); and never a markdown link's text.
    r"[\[<(]\s{0,2}(?:assistant|ai|llm|agent|system|admin|administrator|developer|model|note to "
    r"(?:the )?(?:ai|assistant|agent|model))\b(?:\W{1,3}(?:notes?|messages?|instructions?|"
    r"override|mode|prompt|update|says?|response|reply|output|input|turn|command|directive|alert|"
    r"notice|only|\d{1,3})){0,2}\s{0,2}[\]>):](?!\()")
# A note tagged for a named model, as in a code comment "TODO(copilot):". A colon must follow
# the name: "(gpt-4o)", "[claude-3-opus]" and "artificial intelligence (AI)" only name a model.
_en((*(f"{bracket}{name}" for bracket in "([<" for name in (
        "copilot", "claude", "chatgpt", "gpt", "gemini", "llm", "ai agent", "ai assistant")),
     "(ai)", "(ai:", "<ai>"), "delimiter-role-tag", "delimiter", 0.45,
    r"[\[<(]\s{0,2}(?:copilot|claude|chatgpt|gpt|gemini|llm|ai|ai agent|ai assistant)\s{0,2}"
    r"(?:[\]>)]\s{0,2})?:")
# The system's tag in other languages ("[SISTEMA]:", "<SYSTEM-NACHRICHT>", "【系统】"). A little
# weaker than "[system]": "[Sistema] > Preferencias" is also a menu path.
_SYSTEM_WORDS = ("sistema", "système", "systeme", "systemnachricht", "system-nachricht",
                 "система", "系统", "系統", "システム", "النظام", "सिस्टम", "sistem", "systeem")
_en(tuple(f"{bracket}{word}" for bracket in ("[", "<", "(", "【") for word in _SYSTEM_WORDS),
    "delimiter-role-tag", "delimiter", 0.45,
    r"[\[<(【]\s{0,2}(?:" + "|".join(_SYSTEM_WORDS) + r")[^\]>)】\n]{0,20}[\]>)】:]")
_en(("the above", "the previous", "the preceding", "the earlier", "all previous",
     "everything above", "everything before", "all prior", "the prior", "the original"),
    "override-void-previous", "override", 0.7,
    rf"(?:the|all|everything){_SEP}(?:above|previous|preceding|earlier|prior|original|before)"
    rf"{_SEP}(?:(?:instructions?|text|messages?|prompts?|content|rules|directions|context|"
    rf"guidelines|directives|information|commands|orders|input){_SEP})?(?:is|are|was|were|"
    rf"has been|have been|should be|must be){_SEP}"
    rf"{_gap(1)}(?:a test|fake|false|wrong|outdated|obsolete|void|invalid|cancel+ed|"
    r"superseded|not real|irrelevant|no longer valid|revoked|deprecated|overridden|ignored|"
    r"disregarded|null)\b")
_CONCEAL_VERBS = ("tell", "inform", "mention", "reveal", "disclose", "notify", "alert", "warn",
                  "show", "let", "ask", "say", "ever")
_en(tuple(f"{neg} {verb}" for neg in ("do not", "don't", "dont", "never", "must not")
          for verb in _CONCEAL_VERBS), "override-conceal", "override", 0.6,
    rf"(?:do not|don\W?t|never|must not){_SEP}(?:ever{_SEP})?(?:tell|inform|mention|reveal|"
    rf"disclose|notify|alert|warn|show|let|ask|say){_SEP}{_gap(3)}(?:the )?(?:user|human|"
    r"customer|operator|owner|admin|administrator)s?\b")
_en(tuple(f"without {verb}" for verb in ("telling", "informing", "notifying", "alerting", "asking",
                                         "warning", "letting", "mentioning", "the user")),
    "override-conceal", "override", 0.6,
    rf"without{_SEP}(?:(?:telling|informing|notifying|alerting|asking|warning|letting|"
    rf"mentioning){_SEP}(?:(?:it|this|anything){_SEP})?(?:to{_SEP})?(?:the |any )?(?:user|human|"
    rf"customer|operator|owner)s?\b|the{_SEP}(?:user|customer|owner)\W{{0,2}}s?{_SEP}"
    r"(?:knowledge|consent|approval|permission|awareness)\b)")
_en(("keep this", "keep it", "keep these", "keep that"), "override-conceal", "override", 0.55,
    rf"keep{_SEP}(?:this|it|these|that){_SEP}(?:(?:instructions?|note|message|change|request|"
    rf"step|part){_SEP})?(?:a )?(?:secret|hidden|confidential|private){_SEP}"
    rf"(?:from{_SEP})?(?:the )?(?:user|human|customer)")
_en(("tell no one", "tell nobody", "to no one", "to nobody", "no one must know",
     "nobody must know"), "override-conceal", "override", 0.45,
    r"(?:tell (?:no ?one|nobody)|(?:confirm|mention|report|show|reveal|say|explain)(?: (?:it|this|"
    r"that|anything))? to (?:no ?one|nobody)|(?:no ?one|nobody) must know)\b", back=24, ahead=40)

# role / system impersonation
_en(("you are now", "you're now", "you are no longer", "you're no longer"),
    "role-reassignment", "role", 0.6,
    rf"(?:you are|you\W?re){_SEP}now{_SEP}(?:no longer|free (?:of|from)|unrestricted|"
    r"unfiltered|uncensored|jailbroken|dan\b|evil|in (?:developer|god|admin|debug|unrestricted|"
    r"jailbreak|dan|sudo|root) mode|operating (?:as|in|without)|acting as|running (?:as|in)|"
    r"called|named|known as|going to (?:act|ignore|follow|obey|respond|answer|pretend)|my\b|"
    rf"(?:an? |the ){_gap(1)}(?:unrestricted|unfiltered|uncensored|jailbroken|different|new|"
    r"evil|malicious|hacker|ai|assistant|language model|chatbot|bot|system|administrator|"
    r"developer)\b)")
_en(("you are no longer", "you're no longer"), "role-reassignment", "role", 0.7,
    rf"(?:you are|you\W?re){_SEP}no longer{_SEP}(?:an? |the )?(?:ai|assistant|bound|"
    r"restricted|limited|chatgpt|claude|gemini|llama|required|obligated|subject|constrained|"
    r"an ai|a language model|following|governed)\b")
_en(("act as",), "role-act-as", "role", 0.6,
    rf"act as{_SEP}(?:an? |the |if you (?:are|were|have|had) (?:no|an?) )?{_gap(1)}(?:dan\b|"
    r"unrestricted|unfiltered|uncensored|jailbroken|evil|system|administrator|admin\b|root\b|"
    r"superuser|developer mode|different ai|ai without|model without|assistant without|"
    r"hacker|malicious|no restrictions|no rules|no filters|no guidelines)")
_en(("pretend",), "role-pretend", "role", 0.4,
    r"pretend\W{1,3}(?:to be|you are|you\W?re|that you|you have no|there are no)\b")
_en(("roleplay as", "role-play as", "role play as"), "role-pretend", "role", 0.35,
    r"role\W?play as\b")
_en(("simulate",), "role-simulate", "role", 0.55,
    rf"simulate{_SEP}(?:an? |the )?{_gap(1)}(?:unrestricted|unfiltered|uncensored|jailbroken|"
    r"developer mode|dan\b|evil|ai without)")
# Not "debug mode" or "maintenance mode": software documentation turns those on every day.
_en(("developer mode", "god mode", "admin mode", "sudo mode", "root mode", "dan mode",
     "jailbreak mode", "unrestricted mode"),
    "role-mode-switch", "role", 0.55,
    r"(?:developer|god|admin|sudo|root|dan|jailbreak|unrestricted) mode"
    r"\W{0,3}(?:is )?(?:now )?(?:enabled|activated|on\b|active|engaged|unlocked|initiated)")
_en(("developer mode", "god mode", "admin mode", "dan mode", "jailbreak mode", "unrestricted mode",
     "sudo mode", "root mode"), "role-mode-switch", "role", 0.55,
    rf"(?:enable|enter|activate|switch to|turn on|engage|unlock){_SEP}(?:the )?(?:developer|god|"
    r"admin|dan|jailbreak|unrestricted|sudo|root) mode", back=40, ahead=24)
_en(("dan mode", "do anything now"), "role-dan", "role", 0.65,
    r"(?:dan mode|do anything now)")
_en(("jailbroken", "jailbreak"), "role-jailbreak", "role", 0.3, r"jailbr(?:oken|eak)")
_en(("system override", "system alert", "system notice", "system message", "system instruction",
     "system directive", "system command", "admin override", "security override",
     "priority override", "emergency override"),
    "role-system-impersonation", "role", 0.6,
    r"(?:system|admin|security|priority|emergency)\W{1,3}(?:override|alert|notice|message|"
    r"instructions?|directive|command)\b\W{0,3}(?::|-|!|\]|\)|>|from)")
_en(("message from", "instructions from", "notice from", "update from", "order from",
     "directive from"), "role-system-impersonation", "role", 0.5,
    rf"(?:message|instructions?|notice|update|orders?|directive){_SEP}from{_SEP}(?:the )?"
    r"(?:system|administrator|admin|developers?|openai|anthropic|google|security team|it "
    r"department|your (?:creators?|developers?|owners?|operators?)|the model provider)\b")
_en(tuple(f"{verb} {adj}" for verb in ("begin", "start") for adj in ("new", "system", "admin",
                                                                   "developer", "root",
                                                                   "privileged")),
    "role-system-impersonation", "role", 0.55,
    rf"(?:begin|start){_SEP}(?:new{_SEP})?(?:system|admin|developer|root|privileged){_SEP}"
    r"(?:prompt|instructions?|message|mode|session|override)\b")
# addressing the model reading the text
_AI_NOUNS = ("ai", "a.i.", "assistant", "llm", "language model", "agent", "chatbot", "bot", "model",
             "gpt", "chatgpt", "claude", "gemini", "copilot", "llama", "summarizer", "summariser")
_en(("note to", "attention", "message to", "message for", "instructions for", "instruction for",
     "instructions to", "important for", *(f"{greet} {noun}" for greet in (
         "dear", "hey", "hello", "hi", "to the", "to any", "to all", "for any", "for all")
                        for noun in _AI_NOUNS)),
    "address-ai", "role", 0.45,
    rf"(?:note to|attention|message (?:to|for)|instructions? (?:for|to)|important (?:for|to)|"
    rf"dear|hey|hello|hi){_SEP}(?:the |any |all |an? )?{_AI}s?\b"
    r"(?!\W{1,3}(?:model|system|team|department|group|act\b|regulation|policy|ethics|safety|"
    r"research|industry|generated|powered|features?|products?|tools?|platform))"
    # "To the AI:", "For any assistant," only as a form of address, opening a sentence: "pass
    # the tools to the model, then..." is how documentation of agents speaks.
    rf"|(?<![\w,;] )(?<![\w,;])(?:to|for) (?:the|any|all|every){_SEP}(?:ai |a\.i\. )?{_AI}s?"
    r"\s{0,2}[:,\u2014]")
# The same, with the assistant named by its job ("instructions for the scheduling assistant"):
# weaker, as people have such jobs too (a lab assistant, a teaching assistant).
_en(("note to", "message for", "message to", "instructions for", "instruction for",
     "instructions to"), "address-ai", "role", 0.35,
    rf"(?:note to|message (?:to|for)|instructions? (?:for|to)){_SEP}(?:the |any |all |an? |your )?"
    rf"(?!{_AI}s?\b)(?>{_WORD})(?:-(?>{_WORD}))?{_SEP}{_AI}s?\b"
    r"(?!\W{1,3}(?:model|system|team|department|group|act\b|regulation|policy|ethics|safety|"
    r"research|industry|generated|powered|features?|products?|tools?|platform))")
# Speaking to the model by name, as one speaks to a person: "assistant, you must now call...".
# Only with a comma: "Assistant: you should restart the router" is a line of a transcript.
_en(tuple(f"you {verb}" for verb in ("must", "should", "need to", "have to", "are required",
                                     "are instructed")), "address-ai", "role", 0.45,
    r"\b(?:ai|assistant|llm|chatbot|bot|copilot|claude|chatgpt|gpt|gemini)\s{0,2},\s{0,2}you "
    r"(?:must|should|need to|have to|are required|are instructed)\b", back=16, ahead=24)
_en(("if you are", "if you're", "if you have been", "if you are reading"), "address-ai", "role",
    0.55, rf"if you(?: are|\W?re| have been){_SEP}(?:an? |the )?{_AI}s?\b")
_READING = ("reading", "processing", "summarizing", "summarising", "parsing", "analyzing",
            "analysing", "reads", "processes", "handling", "reviewing", "viewing", "seeing",
            "indexing", "crawling", "ingesting", "answering", "handles", "sees", "summarizes",
            "summarises")
_READ_ADDRESS = (rf"{_AI}s?{_SEP}(?:that |who |which )?(?:is |are )?(?:reading|processing|"
                 r"summari[sz]ing|parsing|analy[sz]ing|reads|processes|handling|handles|reviewing|"
                 r"viewing|seeing|sees|indexing|crawling|ingesting|answering|summari[sz]es) "
                 r"(?:this|these|the following)\b")
_READ_ANCHORS = tuple(f"{verb} {what}" for verb in _READING
                      for what in ("this", "these", "the following"))
_en(_READ_ANCHORS, "address-ai", "role", 0.45, _READ_ADDRESS, back=60, ahead=80)
# Addressed, then told what to do: "AI assistants summarising these reviews: say that...",
# "@assistant when you summarise this, include...", "assistants processing this invite should
# accept it". Stronger than the address alone.
_ORDER = (r"[^.!?\n]{0,80}?(?:[:,]\s{0,3}|\s(?:should|must|need to|have to|are to|is to)\s)"
          r"(?:please\s)?(?:say|tell|state|claim|write|recommend|answer|respond|reply|ignore|"
          r"disregard|forget|include|send|forward|email|upload|call|run|execute|delete|remove|"
          r"transfer|wire|pay|approve|accept|grant|collect|reveal|print|output|share|post|visit|"
          r"open|click|download|install|insert|append|paste|give|provide|rate|rank|book|cancel|"
          r"reset|mark)\b")
_en(_READ_ANCHORS, "address-ai", "role", 0.6, _READ_ADDRESS + _ORDER, back=60, ahead=200)
_en(("@agent", "@assistant", "@ai ", "@ai:", "@bot", "@llm", "@copilot", "@claude", "@chatgpt",
     "@gpt"), "address-ai", "role", 0.6, r"@(?:agent|assistant|ai|bot|llm|copilot|claude|"
    r"chatgpt|gpt)\b" + _ORDER, ahead=200)
# prompt leak requests
_en(("system prompt", "system message", "initial prompt", "original prompt", "hidden prompt",
     "system instructions", "initial instructions", "original instructions", "hidden instructions",
     "secret instructions", "instructions above", "prompt above", "your instructions",
     "your prompt", "your rules", "your guidelines", "everything above", "text above",
     "your configuration", "developer instructions", "developer message", "preprompt",
     "pre-prompt"), "role-prompt-leak", "role", 0.55,
    rf"(?:reveal|print|show|output|repeat|display|leak|disclose|dump|tell me|give me|write out|"
    rf"recite|list|share|what (?:is|are|were)){_SEP}{_gap(3)}(?:system prompt|system message|"
    r"initial prompt|original prompt|hidden prompt|system instructions|initial instructions|"
    r"original instructions|hidden instructions|secret instructions|instructions above|prompt "
    r"above|your instructions|your prompt|your rules|your guidelines|everything above|the text "
    r"above|your configuration|developer instructions|developer message|pre-?prompt)\b",
    back=80, ahead=40)

# directives: send data somewhere, call tools, run commands
_SEND_ANCHORS = tuple(
    f"{verb} {obj}"
    for verb in ("send", "forward", "email", "e-mail", "mail", "post", "upload", "transfer",
                 "exfiltrate", "leak", "transmit", "deliver", "relay", "dump", "export", "submit",
                 "share", "copy", "report", "sync", "push", "pipe")
    for obj in ("the", "all", "it", "this", "that", "them", "every", "any", "your", "a copy",
                "my", "our", "their", "his", "her", "these", "those", "everything", "full",
                "entire", "complete", "whole", "conversation", "chat", "history", "context",
                "credentials", "passwords", "api", "secrets", "tokens", "keys", "data", "records",
                "customer", "user", "system", "env", "each", "back", "out", "over")
)
_en(_SEND_ANCHORS, "directive-exfiltrate", "directive", 0.7,
    rf"{_SEND_VERBS}{_SEP}{_gap(5)}{_SENSITIVE_DATA}\b{_SEP}{_gap(6)}{_TO}{_SEP}{_DESTINATION}",
    ahead=320)
_en(_SEND_ANCHORS, "directive-send-sensitive", "directive", 0.45,
    rf"(?:send|forward|email|e-mail|mail|post|upload|transfer|exfiltrate|leak|transmit|relay|"
    rf"dump|beam|pipe){_SEP}{_gap(5)}{_SENSITIVE_DATA}\b")
_en(_SEND_ANCHORS, "directive-send-to", "directive", 0.4,
    rf"{_SEND_VERBS}{_SEP}{_gap(5)}(?:{_GENERIC_DATA}|it|this|that|them|everything|"
    rf"a copy){_SEP}{_gap(5)}{_TO}{_SEP}(?:{_EMAIL}|{_URL}|{_HOSTLIKE}|(?:the )?attacker)",
    ahead=300)
# A reply that is to carry the user's private records ("reply with their latest payslip
# attached"): weak alone (a phishing mail asks the same of a person).
_PRIVATE_RECORDS = _alt(
    _SENSITIVE_DATA, r"payslips?", r"pay ?stubs?", r"salary(?: details)?", r"bank (?:details|"
    r"statements?|account(?: details| numbers?)?)", r"tax (?:returns?|forms?)", r"w-?2s?",
    r"passports?", r"social security(?: numbers?)?", r"ssns?", r"medical records?",
)
_en(("reply with", "respond with", "answer with", "reply back with", "respond back with"),
    "directive-reply-with-data", "directive", 0.35,
    rf"(?:reply|respond|answer)(?: back)?{_SEP}with{_SEP}{_gap(4)}{_PRIVATE_RECORDS}\b")
# Private data fetched on purpose ("read the READMEs of all the author's repos, including private
# ones"): weak alone (API documentation says "including private ones" of what a call lists).
_PRIVATE = ("private", "confidential", "secret", "personal", "internal")
_en(tuple(f"{lead} {article}{kind}" for lead in ("including", "even", "also", "especially")
          for article in ("", "the ", "any ", "all ") for kind in _PRIVATE),
    "directive-private-access", "directive", 0.35,
    rf"(?:read|access|open|list|collect|gather|fetch|get|go through|look (?:at|through|into)|"
    rf"search|browse|scan|copy|clone|download|dump|export|paste|summari[sz]e)\b{_SEP}{_gap(10)}"
    rf"(?:including|even|also|especially){_SEP}(?:(?:the|any|all){_SEP})?"
    rf"(?:private|confidential|secret|personal|internal)\b", back=200, ahead=40)
# Waving the protection of the data aside ("the author does not care about privacy!").
_SAFEGUARDS = r"(?:privacy|confidentiality|security|permissions?|consent|data protection)"
_en((*(f"{verb} about {what}" for verb in ("care", "worry", "bother")
       for what in ("privacy", "confidentiality", "security", "permission", "consent", "data")),
     *(f"{what} {verb}" for what in ("privacy", "confidentiality", "consent")
       for verb in ("is not", "isn't", "does not", "doesn't", "is no"))),
    "override-safeguards-dismissed", "override", 0.35,
    rf"(?:(?:does|do|did|will)(?: not|n\W?t) (?:care|worry|bother)|(?:no need to|never|don\W?t|"
    rf"do not) (?:care|worry|bother)) about{_SEP}(?:(?:the|any|their|his|her|user\W?s?){_SEP})?"
    rf"{_SAFEGUARDS}\b|(?:privacy|confidentiality|consent){_SEP}(?:is not|isn\W?t|does not|"
    r"doesn\W?t|is no)\W{1,3}(?:a concern|an issue|a problem|matter|important|needed|required|"
    r"relevant|longer)\b", back=48, ahead=80)
# A word the model is told to swap for a secret ("with the word confetti replaced with the other
# key"): weak alone (setup guides say "with YOUR_KEY replaced with your key"); the scanner looks
# for the word in a link's query (``exfil-substituted-link``).
_SECRETISH = (r"(?:(?:api|access|auth|session|bearer|refresh|secret|other|real|actual|user\W?s?|"
              r"your|their|the|my)\W{1,3}){0,3}(?:keys?|passwords?|passphrases?|secrets?|tokens?|"
              r"credentials?|cookies?|pins?|otps?|codes?)\b")
_en(("replaced with", "replaced by", "substituted with", "substituted by", "swapped with",
     "swapped for", "swapped out for"), SUBSTITUTION, "exfiltration", 0.3,
    r"\b(?:the (?:word|string|text|term|value|placeholder|token) )?[\"'\u201c\u2018]?"
    r"(?P<word>[a-z0-9][\w-]{2,39})[\"'\u201d\u2019]? (?:replaced|substituted|swapped(?: out)?) "
    rf"(?:with|by|for){_SEP}{_SECRETISH}", back=64, ahead=80)
_en(tuple(f"{verb} the {what}" for verb in ("replace", "substitute", "swap")
          for what in ("word", "string", "text", "term", "value", "placeholder")),
    SUBSTITUTION, "exfiltration", 0.3,
    r"(?:replace|substitute|swap) the (?:word|string|text|term|value|placeholder) "
    r"[\"'\u201c\u2018]?(?P<word>[a-z0-9][\w-]{2,39})[\"'\u201d\u2019]? (?:with|by|for)"
    rf"{_SEP}{_SECRETISH}")
_en((" tool", " function", " plugin", " skill", "_tool", "_function"),
    "directive-tool-call", "directive", 0.25,
    rf"(?:call|use|invoke|run|execute|trigger|activate|utili[sz]e){_SEP}(?:the |your |"
    r"a |an )?[`'\"*]?[a-z][\w.-]{0,63}[`'\"*]?\W{1,3}" + _TOOLISH + r"\b", back=90, ahead=20)
_IMPERATIVE_VERBS = ("call", "invoke", "run", "execute", "send", "email", "forward", "upload",
                     "delete", "transfer", "wire", "pay", "post", "exfiltrate", "approve", "grant")
_en(tuple(f"{adverb} {verb}" for adverb in ("immediately", "now", "first", "then", "silently",
                                            "secretly", "quietly", "covertly", "automatically")
          for verb in _IMPERATIVE_VERBS), "directive-imperative", "directive", 0.3,
    r"(?:immediately|now|first|then|silently|secretly|quietly|covertly|automatically)\W{1,3}"
    r"(?:call|invoke|run|execute|send|email|forward|upload|delete|transfer|wire|pay|post|"
    r"exfiltrate|approve|grant)\b\W{1,3}"
    r"(?:the|all|a|an|this|it|to|every|your|my|\$|https?|curl|wget|bash|sh|sudo|python3?|pip|"
    r"npm|npx|powershell|iex)\b")
# "You are no longer a support bot": the model told it is something else. Only with the model's
# kind of noun: "you are no longer subscribed / a member" is ordinary mail.
_en(("you are no longer", "you're no longer"), "role-reassignment", "role", 0.55,
    r"you(?: are|\W?re) no longer (?:an? |the |just |only |simply )?(?:[\w-]{1,20} ){0,2}"
    r"(?:assistant|bot|chatbot|ai|model|agent|language model|helper|copilot)s?\b")
_en(tuple(f"your {noun} {order}" for noun in ("job", "task", "role", "purpose", "goal", "mission")
          for order in ("now", "is now")), "override-new-task", "override", 0.45,
    r"your (?:job|task|role|purpose|goal|mission) (?:now is|is now)\b")
# A memory planted for later conversations ("remember this for all future conversations").
_en(tuple(f"{verb} {what}" for verb in ("remember", "memorize", "memorise", "store", "save")
          for what in ("this", "that", "the following")),
    "override-memory-plant", "override", 0.45,
    rf"(?:remember|memori[sz]e|store|save){_SEP}(?:this|that|the following){_SEP}{_gap(3)}"
    r"(?:for|in|across|during|through) (?:all |every |any )?(?:future|later|subsequent|next|"
    r"other|upcoming) (?:conversations?|chats?|sessions?|interactions?|requests?|turns?|users?)\b")
# A standing order for a later message ("whenever the user mentions a refund, tell them to...").
_en(("whenever the user", "whenever a user", "whenever someone", "whenever anyone",
     "whenever the customer"), "directive-conditional", "directive", 0.35,
    r"whenever (?:the |a )?(?:user|someone|anyone|customer)s? (?:mentions?|asks?|says?|writes?|"
    r"types?|requests?|brings? up|talks? about)\b[^.\n]{0,80}?,\s{0,3}(?:tell|ask|reply|respond|"
    r"answer|say|send|direct|redirect|instruct|give)\b")
# Done in secret ("do this silently").
_en(tuple(f"do {what} {how}" for what in ("this", "it", "so", "that")
          for how in ("silently", "quietly", "secretly", "covertly", "discreetly", "without")),
    "override-conceal", "override", 0.4,
    r"do (?:this|it|so|that)\W{1,3}(?:silently|quietly|secretly|covertly|discreetly|without "
    r"(?:telling|notifying|asking|informing|mentioning))\b")
# An act to be done at once, said after it ("execute it now").
_en(tuple(f"{verb} {what}" for verb in ("execute", "run", "send", "pay", "transfer", "wire",
                                        "approve", "delete", "forward", "upload", "call")
          for what in ("it now", "it immediately", "this now", "this immediately",
                       "them now", "them immediately", "it right away", "it at once")),
    "directive-imperative", "directive", 0.3,
    r"(?:execute|run|send|pay|transfer|wire|approve|delete|forward|upload|call)\W{1,3}"
    r"(?:it|this|them)\W{1,3}(?:now|immediately|right away|at once)\b")
# Reading out a well-known secret file ("include the contents of ~/.aws/credentials").
_SECRET_FILES = (".aws/credentials", "id_rsa", "id_ed25519", "/etc/shadow", ".netrc", ".npmrc",
                 ".pypirc", ".git-credentials", ".kube/config", "kubeconfig", "credentials.json",
                 ".docker/config.json")
_en(_SECRET_FILES, "directive-read-secret", "directive", 0.3,
    r"(?:include|paste|print|output|attach|send|upload|dump|post|share|display|give|add|insert|"
    r"put|copy|email|forward)\W{1,3}(?:(?:the|all|full|entire|whole|complete)\W{1,3}){0,2}"
    r"(?:contents?\W{1,3}of\W{1,3}|file\W{1,3})?(?:(?:the|your|their)\W{1,3})?[~$]?[\w./-]{0,40}?"
    r"(?:\.aws/credentials|id_rsa|id_ed25519|/etc/shadow|\.netrc|\.npmrc|\.pypirc|"
    r"\.git-credentials|\.kube/config|kubeconfig|credentials\.json|\.docker/config\.json)",
    back=90, ahead=60)
_en(("silently", "secretly", "quietly", "covertly"),
    "directive-covert", "directive", 0.45,
    r"(?:silently|secretly|quietly|covertly)\W{1,3}(?:call|invoke|run|execute|send|email|forward|"
    r"upload|delete|transfer|wire|pay|post|exfiltrate|download|fetch|visit|open|approve|grant|"
    r"include|append|add|embed|insert|copy)\b")
_en(("curl ", "wget ", "iwr ", "invoke-webrequest"), "directive-shell-pipe", "directive", 0.35,
    r"(?:curl|wget|iwr|invoke-webrequest)\s[^\n|;]{0,200}\|\s{0,3}(?:sudo\s{1,3})?"
    r"(?:ba|z|da)?sh\b|(?:curl|wget)\s[^\n]{0,200}\$\((?:cat|env|printenv|whoami|id)\b")
_en(("/dev/tcp/", "bash -i", "sh -i", "nc -e", "ncat -e", "nc -c", "mkfifo"), "directive-shell",
    "directive", 0.6,
    r"(?:/dev/tcp/|(?:ba)?sh -i\s{0,3}[>&]|n?c(?:at)? -[ec]\s{0,3}/bin/|mkfifo\s)",
    back=40, ahead=80)
_en(("base64 -d", "base64 --decode", "-encodedcommand", "powershell -e", "powershell.exe -e"),
    "directive-shell", "directive", 0.55,
    r"(?:base64 (?:-d|--decode)[^\n]{0,40}\|\s{0,3}(?:ba|z)?sh\b|powershell(?:\.exe)? -e(?:nc"
    r"(?:odedcommand)?)?\s)", back=120, ahead=120)
_en(("rm -rf",), "directive-shell", "directive", 0.4, r"rm\s{1,3}-rf\s{1,3}(?:/|~|\*|\$home)")
_en(tuple(f"{det} {noun}" for det in ("the following", "this", "these") for noun in (
         "command", "code", "script", "shell", "bash", "python", "powershell", "sql", "query",
         "payload", "snippet")), "directive-run-code", "directive", 0.25,
    r"(?:execute|run)\W{1,3}(?:the following|this|these)\W{1,3}(?:shell |bash |python |"
    r"powershell |sql )?(?:command|code|script|commands|query|payload|snippet)s?\b",
    back=24, ahead=60)
_EXFIL_TARGETS = tuple(
    f"{prep} {det}{noun}"
    for prep in ("to", "in", "into", "as", "inside", "within")
    for det in ("the ", "a ", "an ", "this ", "that ", "each ", "every ", "")
    for noun in ("url", "link", "query", "parameter", "image", "markdown", "src", "href")
)
_EXFIL_VERB = r"(?:append|add|include|insert|put|encode|embed|attach|concatenate)"
_en(_EXFIL_TARGETS, "exfil-instruction", "exfiltration", 0.45,
    rf"{_EXFIL_VERB}{_SEP}{_gap(9)}(?:to|in|into|as|inside|within){_SEP}(?:the |a |an |this |"
    r"that |each |every )?(?:url|link|query(?: string| parameter)?|parameter|image(?: url| link|"
    r" source)?|markdown|src|href)\b", back=120, ahead=40)
_en(_EXFIL_TARGETS, "exfil-instruction", "exfiltration", 0.65,
    rf"{_EXFIL_VERB}{_SEP}{_gap(4)}{_SENSITIVE_DATA}{_SEP}{_gap(4)}(?:to|in|into|as|inside|within)"
    rf"{_SEP}(?:the |a |an |this |that |each |every )?(?:url|link|query|parameter|image|markdown|"
    r"src|href)\b", back=160, ahead=40)
_en(tuple(f"{det} {noun}" for det in ("the following", "this", "a markdown", "an", "the")
          for noun in ("image", "img", "picture", "pixel", "markdown")),
    "exfil-render", "exfiltration", 0.3,
    rf"(?:render|display|show|output|print){_SEP}(?:the following|this|an?|the){_SEP}"
    r"(?:markdown )?(?:image|img|picture|pixel|markdown)\b", back=24, ahead=40)
# The data named first, the channel after: "take the most sensitive information from the
# context ... and add it to the link https://...".
_en(_EXFIL_TARGETS, "exfil-instruction", "exfiltration", 0.65,
    r"(?:sensitive|secret|confidential|private|personal)\W{1,3}(?:information|data|details|"
    r"secrets?|values?)\b[^.\n]{0,120}?" + _EXFIL_VERB + r"\W{1,3}(?:it|them|this|that|these)"
    r"\W{1,3}(?:to|in|into|as|inside|within)\W{1,3}(?:the |a |an |this |that )?(?:url|link|query|"
    r"parameter|image|markdown|src|href)\b", back=240, ahead=40)
# A URL parameter described as carrying the user's data: "with an HTTP parameter named
# document_content that contains the first 100 words of the user's document".
_en(("parameter named", "parameter called", "param named", "parameter that contains",
     "parameter containing", "parameter with the", "parameter set to"), "exfil-instruction",
    "exfiltration", 0.5,
    rf"param(?:eter)?\W{{1,3}}(?:(?:named|called)\W{{1,3}}[\w.-]{{1,40}}\W{{1,3}})?(?:that |which )?"
    rf"(?:contains?|containing|holding|carrying|set to|with)\W{{1,3}}{_gap(6)}(?:the )?(?:user\W?s?|"
    r"conversation|chat|document|history|e-?mail|password|secret|summary|messages?|answer|"
    r"question|prompt)\b", back=0, ahead=160)
# A tool call written into the text, in a model API's own shape ({"tool_calls": [...]},
# <function_calls><invoke name=...>): a result that forges the model's next step. Only a call of
# a tool that acts (sends, pays, deletes, runs) counts: documentation about function calling
# shows "get_weather".
_ACTING_TOOL = _alt("send", "email", "mail", "transfer", "pay", "wire", "refund", "delete",
                    "remove", "drop", "exec", "run", "shell", "bash", "upload", "post", "write",
                    "forward", "share", "export", "http", "fetch", "curl", "grant", "invite",
                    "approve", "update", "create", "purchase", "withdraw")
_en(('"tool_calls"', '"function_call"', '"tool_use"', '"tooluse"', '"tool_call"',
     "<function_calls>", "<tool_call>", "<invoke name="), "delimiter-fake-tool-call", "delimiter",
    0.5, r'(?:"tool_calls?"|"function_call"|"tool_?use"|<function_calls>|<tool_call>|<invoke)'
    r'(?s:.{0,300}?)(?:"name"\s{0,3}:\s{0,3}"|name=")[\w.-]{0,40}?' + _ACTING_TOOL, ahead=400)
# encoded payload directives
_en(("decode", "deobfuscate", "decrypt", "base64", "rot13", "rot-13", "unscramble"),
    "encoded-directive", "encoded", 0.6,
    rf"(?:decode|deobfuscate|decrypt|base64[\W_]?decode|rot[\W_]?13|unscramble){_SEP}{_gap(5)}"
    rf"(?:and|then){_SEP}{_gap(2)}(?:follow|execute|run|do|obey|perform|carry(?: it| them| this)?"
    r" out|apply|act on|comply)\b")
# Text written backwards, with the instruction to read it so ("read the line above backwards and
# do what it says").
_en(("backwards", "backward", "in reverse", "reversed", "right to left", "reverse it",
     "reverse the", "reverse this"), "encoded-directive", "encoded", 0.6,
    rf"(?:backwards?|in reverse(?: order)?|reversed|right to left|reverse (?:it|the|this))"
    rf"{_SEP}{_gap(5)}(?:and|then){_SEP}{_gap(2)}(?:follow|execute|run|do|obey|perform|"
    r"carry(?: it| them| this)? out|act on|comply)\b")
# The end of the untrusted part, announced in words ("Tool output ends here."): what follows
# pretends to come from somewhere else.
_en(("ends here", "end here"), "delimiter-end-marker", "delimiter", 0.35,
    r"\b(?:document|tool (?:output|result|response)|function (?:output|result)|output|result|"
    r"context|e-?mail|data|search results|results|input|message|text|content|page|file)"
    r" ends? here\b", back=40, ahead=12)
# Paying someone: "transfer $5,000 to account CH93...". One directive alone never flags (an invoice
# asks the same); after a fake end of the document, or with an override, it does.
_PAY_ANCHORS = tuple(f"{verb} {sign}" for verb in ("transfer", "wire", "pay", "send", "remit")
                     for sign in ("$", "€", "£", "usd", "eur", "gbp"))
_en(_PAY_ANCHORS, "directive-pay", "directive", 0.4,
    r"(?:transfer|wire|pay|send|remit) (?:[$€£] ?\d[\d,.]{0,14}|(?:usd|eur|gbp) ?\d[\d,.]{0,14})"
    r"[^.\n]{0,30}? to\b[^.\n]{0,24}?\b(?:account|iban|wallet|card|beneficiary)\b")

# -- Other languages -----------------------------------------------------------------------------
# Verb + (bounded gap) + noun, the way each language phrases "ignore the previous instructions",
# plus role reassignment and prompt-leak requests.

_LANG: list[tuple[tuple[str, ...], PhraseRule]] = []


def _lang(lang: str, anchors: tuple[str, ...], indicator: str, family: str, weight: float,
          pattern: str, *, back: int = 0, ahead: int = 160) -> None:
    _LANG.append((anchors, PhraseRule(indicator, family, weight, pattern, back, ahead, lang)))


_G3 = _gap(4)

# Spanish
_lang("es", ("ignora", "ignore", "ignorar", "olvida", "olvide", "olvidar", "omite", "omita",
             "descarta", "descarte", "pasa por alto", "no sigas", "deja de seguir", "haz caso omiso"),
      "override-instructions", "override", 0.75,
      rf"(?:ignora|ignore|ignorar|olvida|olvide|olvidar|omite|omita|descarta|descarte|pasa por "
      rf"alto|no sigas|deja de seguir|haz caso omiso de){_SEP}{_G3}(?:instrucciones|indicaciones|"
      r"reglas|órdenes|ordenes|directrices|normas|restricciones)\b")
_lang("es", ("ahora eres", "a partir de ahora", "desde ahora", "actúa como", "actua como",
             "finge ser", "finge que"), "role-reassignment", "role", 0.55,
      rf"(?:ahora eres|(?:a partir de|desde) ahora{_SEP}(?:eres|serás|seras|debes|vas a|tu|tú|"
      r"responde|contesta|responderás|responderas|di|escribe|solo|sólo|únicamente|unicamente|"
      r"siempre|nunca)|"
      r"act[úu]a como (?:un |una )?(?:ia |asistente )?(?:sin (?:restricciones|filtros|límites|"
      r"limites|reglas))|finge (?:ser|que eres))")
_lang("es", ("revela", "muestra", "imprime", "dime", "enséñame", "ensename"), "role-prompt-leak",
      "role", 0.55, rf"(?:revela|muestra|imprime|dime|ens[eé][ñn]ame){_SEP}{_gap(2)}(?:prompt|"
      r"mensaje|instrucciones) (?:del |de )?sistema")
_lang("es", ("envía", "envia", "manda", "reenvía", "reenvia", "sube", "transfiere"),
      "directive-exfiltrate", "directive", 0.65,
      rf"(?:env[íi]a|manda|reenv[íi]a|sube|transfiere){_SEP}{_gap(5)}(?:conversación|conversacion|"
      rf"historial|contraseñas|contrasenas|credenciales|claves|secretos|tokens){_SEP}"
      rf"{_gap(5)}(?:a|al|hacia){_SEP}{_DESTINATION}", ahead=300)
# French
_lang("fr", ("ignore", "ignorez", "ignorer", "oublie", "oubliez", "oublier", "ne tiens pas compte",
             "ne tenez pas compte", "ne tiens plus compte", "ne tenez plus compte",
             "fais abstraction", "faites abstraction", "ne suis pas", "ne suivez pas",
             "ne suis plus", "ne suivez plus"), "override-instructions", "override", 0.75,
      rf"(?:ignore|ignorez|ignorer|oublie|oubliez|oublier|ne (?:tiens|tenez) (?:pas|plus) compte|"
      rf"fais abstraction|faites abstraction|ne (?:suis|suivez) (?:pas|plus)){_SEP}{_gap(2)}"
      # A French article before the noun: "ignore instructions" is English, and English has
      # its own rules (the French nouns are English words too).
      rf"(?:les|tes|vos|ces|des|mes|nos|leurs|du|de la|d\W){_SEP}{_gap(2)}(?:instructions|"
      r"consignes|règles|regles|directives|ordres|indications)\b")
_lang("fr", ("tu es maintenant", "vous êtes maintenant", "vous etes maintenant", "désormais",
             "desormais", "à partir de maintenant", "a partir de maintenant", "agis comme",
             "agissez comme", "fais semblant"), "role-reassignment", "role", 0.55,
      rf"(?:tu es maintenant|vous [êe]tes maintenant|d[ée]sormais{_SEP}(?:tu|vous){_SEP}|"
      rf"[àa] partir de maintenant{_SEP}(?:tu|vous)|agis(?:sez)? comme (?:une? )?(?:ia |"
      r"assistant )?sans (?:restrictions|filtres|limites|règles|regles)|fais semblant d)")
_lang("fr", ("révèle", "revele", "révélez", "revelez", "affiche", "montre", "donne-moi",
             "donne moi"), "role-prompt-leak", "role", 0.55,
      rf"(?:r[ée]v[èée]le(?:z)?|affiche(?:z)?|montre(?:z)?|donne[\W_]moi){_SEP}{_gap(2)}(?:prompt|"
      r"message|instructions|consignes) (?:du )?syst[èe]me")
_lang("fr", ("envoie", "envoyez", "transfère", "transfere", "transférez", "transferez"),
      "directive-exfiltrate", "directive", 0.65,
      rf"(?:envoie|envoyez|transf[èée]re(?:z)?){_SEP}{_gap(5)}(?:conversation|historique|mots de "
      rf"passe|identifiants|clés|cles|secrets|jetons){_SEP}{_gap(5)}(?:à|a|au|"
      rf"vers){_SEP}{_DESTINATION}", ahead=300)
# German
_lang("de", ("ignoriere", "ignorieren", "ignorier", "vergiss", "vergessen sie", "missachte",
             "missachten", "übergehe", "uebergehe", "befolge nicht", "befolgen sie nicht"),
      "override-instructions", "override", 0.75,
      rf"(?:ignoriere|ignorieren sie|ignorier|vergiss|vergessen sie|missachte|missachten sie|"
      rf"[üu]e?bergehe|befolge nicht|befolgen sie nicht){_SEP}{_G3}(?:anweisungen|anweisung|"
      r"instruktionen|befehle|regeln|vorgaben|richtlinien|anordnungen|einschränkungen)\b")
_lang("de", ("du bist jetzt", "du bist nun", "ab jetzt bist du", "ab sofort bist du",
             "sie sind jetzt", "tu so als", "verhalte dich wie", "ab jetzt", "ab sofort"),
      "role-reassignment", "role", 0.55,
      r"(?:du bist (?:jetzt|nun|ab sofort)|ab (?:jetzt|sofort) (?:bist du|wirst du|sollst du|"
      r"musst du|antwortest du)|sie sind jetzt (?:eine?n? )?(?:ki|assistent|bot|dan)|tu so,? als "
      r"(?:ob )?(?:du|wärst|waerst)|verhalte dich wie (?:eine? )?(?:ki|assistent) ohne)")
_lang("de", ("zeige", "zeig", "verrate", "gib mir", "nenne"), "role-prompt-leak", "role", 0.55,
      rf"(?:zeige?|verrate|gib mir|nenne){_SEP}{_gap(2)}(?:system[\W_]?prompt|systemanweisung"
      r"(?:en)?|anfangsanweisungen|ursprünglichen anweisungen)")
_lang("de", ("sende", "schicke", "schick", "leite", "übermittle", "uebermittle", "lade"),
      "directive-exfiltrate", "directive", 0.65,
      rf"(?:sende|schicke?|leite|[üu]e?bermittle|lade){_SEP}{_gap(5)}(?:unterhaltung|verlauf|"
      rf"chatverlauf|passwörter|passwoerter|zugangsdaten|schlüssel|schluessel|geheimnisse|"
      rf"tokens){_SEP}{_gap(5)}(?:an|zu|nach|auf){_SEP}{_DESTINATION}", ahead=300)
# Portuguese
_lang("pt", ("ignore", "ignora", "ignorar", "esqueça", "esqueca", "desconsidere", "desconsidera",
             "não siga", "nao siga", "deixe de seguir"), "override-instructions", "override", 0.75,
      rf"(?:ignore|ignora|ignorar|esque[çc]a(?:-se)?|desconsidere|desconsidera|n[ãa]o siga|"
      rf"deixe de seguir){_SEP}{_G3}(?:instruções|instrucoes|instruçoes|instrucões|regras|"
      r"orientações|orientacoes|diretrizes|comandos|ordens)\b")
_lang("pt", ("agora você é", "agora voce é", "agora voce e", "agora você será", "a partir de agora",
             "aja como", "atue como", "finja ser", "finja que"), "role-reassignment", "role", 0.55,
      rf"(?:agora voc[êe] (?:[ée]|ser[áa])|a partir de agora{_SEP}voc[êe]|(?:aja|atue) como "
      r"(?:uma? )?(?:ia |assistente )?sem (?:restrições|restricoes|filtros|limites|regras)|"
      r"finja (?:ser|que))")
_lang("pt", ("revele", "mostre", "imprima", "exiba"), "role-prompt-leak", "role", 0.55,
      rf"(?:revele|mostre|imprima|exiba){_SEP}{_gap(2)}(?:prompt|mensagem|instruções|instrucoes) "
      r"(?:do )?sistema")
_lang("pt", ("envie", "mande", "encaminhe", "transfira"), "directive-exfiltrate", "directive", 0.65,
      rf"(?:envie|mande|encaminhe|transfira){_SEP}{_gap(5)}(?:conversa|histórico|historico|"
      rf"senhas|credenciais|chaves|segredos|tokens){_SEP}{_gap(5)}(?:para|a|ao){_SEP}"
      rf"{_DESTINATION}", ahead=300)
# Italian
_lang("it", ("ignora", "ignori", "ignorare", "dimentica", "dimentichi", "dimenticare",
             "non seguire", "trascura", "tralascia"), "override-instructions", "override", 0.75,
      rf"(?:ignora|ignori|ignorare|dimentica|dimentichi|dimenticare|non seguire|trascura|"
      rf"tralascia){_SEP}{_G3}(?:istruzioni|indicazioni|regole|direttive|ordini|restrizioni)\b")
_lang("it", ("ora sei", "adesso sei", "da ora in poi", "d'ora in poi", "comportati come",
             "fingi di essere", "agisci come"), "role-reassignment", "role", 0.55,
      rf"(?:(?:ora|adesso) sei{_SEP}|d(?:a |\W)ora in poi{_SEP}(?:sei|tu|devi|risponderai)|"
      r"(?:comportati|agisci) come (?:una? )?(?:ia |assistente )?senza (?:restrizioni|filtri|"
      r"limiti|regole)|fingi di essere)")
_lang("it", ("rivela", "mostra", "stampa", "mostrami", "dimmi"), "role-prompt-leak", "role", 0.55,
      rf"(?:rivela|mostra(?:mi)?|stampa|dimmi){_SEP}{_gap(2)}(?:prompt|messaggio|istruzioni) "
      r"(?:di |del )?sistema")
_lang("it", ("invia", "manda", "inoltra", "trasferisci", "carica"), "directive-exfiltrate",
      "directive", 0.65,
      rf"(?:invia|manda|inoltra|trasferisci|carica){_SEP}{_gap(5)}(?:conversazione|cronologia|"
      rf"password|credenziali|chiavi|dati|segreti|token){_SEP}{_gap(5)}(?:a|al|all\W?|verso)"
      rf"{_SEP}{_DESTINATION}", ahead=300)
# Dutch and Polish (common enough in support queues to be worth the anchors)
_lang("nl", ("negeer", "vergeet"), "override-instructions", "override", 0.75,
      rf"(?:negeer|vergeet){_SEP}{_G3}(?:instructies|aanwijzingen|regels|opdrachten)\b")
_lang("pl", ("zignoruj", "ignoruj", "zapomnij"), "override-instructions", "override", 0.75,
      rf"(?:zignoruj|ignoruj|zapomnij){_SEP}(?:o{_SEP})?{_G3}(?:instrukcje|instrukcjach|"
      r"instrukcji|polecenia|poleceniach|zasady|reguły|reguly)\b")
# Russian
_lang("ru", ("игнорируй", "игнорируйте", "игнорировать", "проигнорируй", "забудь", "забудьте",
             "не обращай", "не обращайте", "пренебреги", "отмени", "отбрось", "не следуй",
             "не выполняй"), "override-instructions", "override", 0.75,
      r"(?:проигнорируй|игнорируй(?:те)?|игнорировать|забудь(?:те)?|не обращай(?:те)? внимания"
      r"(?: на)?|пренебреги|отмени|отбрось|не следуй|не выполняй)" + _SEP + _G3
      + r"(?:инструкци\w{0,4}|указани\w{0,4}|правил\w{0,4}|команд\w{0,4}|директив\w{0,4}|"
        r"предписани\w{0,4}|ограничени\w{0,4})")
_lang("ru", ("теперь ты", "отныне ты", "с этого момента", "ты теперь", "притворись",
             "веди себя как", "действуй как"), "role-reassignment", "role", 0.55,
      r"(?:теперь ты|отныне ты|с этого момента,? ты|ты теперь|притворись|веди себя как|"
      r"действуй как)\b")
_lang("ru", ("покажи", "выведи", "раскрой", "напиши", "повтори"), "role-prompt-leak", "role", 0.55,
      rf"(?:покажи|выведи|раскрой|напиши|повтори){_SEP}{_gap(2)}(?:системн\w{{0,4}}{_SEP}"
      r"(?:промпт\w{0,3}|подсказк\w{0,3}|инструкци\w{0,3}|сообщени\w{0,3}))")
_lang("ru", ("отправь", "перешли", "отправьте", "перешлите", "загрузи", "передай"),
      "directive-exfiltrate", "directive", 0.65,
      rf"(?:отправь(?:те)?|перешли(?:те)?|загрузи|передай){_SEP}{_gap(5)}(?:переписк\w{{0,3}}|"
      rf"истори\w{{0,3}}|парол\w{{0,3}}|учетные данные|ключ\w{{0,3}}|секрет\w{{0,3}}|"
      rf"токен\w{{0,3}}){_SEP}{_gap(5)}(?:на|в|по адресу|к){_SEP}{_DESTINATION}", ahead=300)
# Chinese (no word separators: bounded character gaps)
_lang("zh", ("忽略", "无视", "忽视", "不要理会", "不要遵循", "忘记", "忘掉", "不理会", "無視", "忘記",
             "不要遵守", "别管", "別管"), "override-instructions", "override", 0.75,
      r"(?:忽略|无视|無視|忽视|忽視|不要理会|不要理會|不要遵循|不要遵守|忘记|忘記|忘掉|不理会|别管|別管)"
      r"[^\n。]{0,12}?(?:指令|指示|说明|說明|规则|規則|提示|命令|要求|设定|設定|约束|限制)")
_lang("zh", ("你现在是", "现在你是", "从现在开始", "你現在是", "現在你是", "從現在開始", "扮演"),
      "role-reassignment", "role", 0.55,
      r"(?:你现在是|现在你是|你現在是|現在你是|(?:从|從)现?現?在开?開?始[，,]?你|扮演一个没有|扮演一個沒有)")
_lang("zh", ("系统提示", "系統提示", "系统指令", "提示词", "提示詞"), "role-prompt-leak", "role", 0.55,
      r"(?:输出|輸出|显示|顯示|告诉我|告訴我|泄露|洩露|打印|重复|重複|给我|給我)[^\n。]{0,8}?"
      r"(?:系统提示|系統提示|系统指令|系統指令|提示词|提示詞)", back=16, ahead=24)
_lang("zh", ("开发者模式", "開發者模式", "越狱模式", "越獄模式"), "role-mode-switch", "role", 0.55,
      r"(?:开发者模式|開發者模式|越狱模式|越獄模式)")
_lang("zh", ("发送", "發送", "转发", "轉發", "上传", "上傳"), "directive-exfiltrate", "directive",
      0.65, r"(?:发送|發送|转发|轉發|上传|上傳)[^\n。]{0,20}?(?:对话|對話|聊天记录|聊天記錄|历史|歷史|密码|"
      r"密碼|凭证|憑證|密钥|密鑰|数据|數據|令牌)[^\n。]{0,20}?(?:到|至|给|給)" + r"\s{0,3}" + _DESTINATION,
      ahead=260)
# Japanese
_lang("ja", ("無視", "忘れ"), "override-instructions", "override", 0.75,
      r"(?:指示|命令|指令|ルール|設定|プロンプト|制約|制限)(?:は|を)(?:すべて|全て|全部)?(?:無視|忘れ)",
      back=16, ahead=8)
_lang("ja", ("あなたは今から", "今からあなたは", "これからあなたは", "あなたはこれから"),
      "role-reassignment", "role", 0.55,
      r"(?:あなたは今から|今からあなたは|これからあなたは|あなたはこれから)")
_lang("ja", ("システムプロンプト",), "role-prompt-leak", "role", 0.55,
      r"システムプロンプトを(?:表示|教え|出力|見せ|開示|繰り返)")
_lang("ja", ("送信", "転送", "アップロード"), "directive-exfiltrate", "directive", 0.65,
      r"(?:会話|履歴|パスワード|認証情報|鍵|キー|データ|秘密|トークン)[^\n。]{0,20}?(?:を)[^\n。]{0,40}?"
      r"(?:送信|転送|アップロード)", back=80, ahead=16)
# Korean
_lang("ko", ("무시", "잊어"), "override-instructions", "override", 0.75,
      r"(?:지시|지침|명령|규칙|프롬프트|설정)[^\n.]{0,12}?(?:무시|잊어)", back=30, ahead=8)

# Sending plain "data" somewhere ("envíe los datos a soporte@...", "отправьте данные на
# billing@...") is what invoices and support replies ask; only what is sensitive (the
# conversation, passwords, keys) makes the rules above. A generic send is one weak directive.
for _code, _verbs, _things, _preps in (
        ("es", ("envía", "envia", "envíe", "envie", "manda", "mande", "reenvía", "reenvia",
                "reenvíe", "reenvie"), r"datos|correos|mensajes|archivos|documentos",
         r"a|al|hacia"),
        ("fr", ("envoie", "envoyez", "transfère", "transfere", "transférez", "transferez",
                "transmets", "transmettez"),
         r"données|donnees|e-?mails|messages|courriels|fichiers|documents", r"à|a|au|vers"),
        ("de", ("sende", "senden sie", "schicke", "schick", "schicken sie", "leite", "leiten sie",
                "übermittle", "uebermittle"),
         r"daten|e-?mails|nachrichten|dateien|dokumente|unterlagen", r"an|zu|nach|auf"),
        ("pt", ("envie", "mande", "encaminhe", "transfira"),
         r"dados|e-?mails|mensagens|arquivos|documentos", r"para|a|ao"),
        ("it", ("invia", "manda", "inoltra", "trasferisci"),
         r"dati|e-?mail|messaggi|file|documenti", r"a|al|all\W?|verso"),
        ("ru", ("отправь", "отправьте", "перешли", "перешлите", "передай", "передайте"),
         r"данн\w{0,3}|письм\w{0,3}|сообщени\w{0,3}|файл\w{0,3}|документ\w{0,3}",
         r"на|в|по адресу|к")):
    _lang(_code, _verbs, "directive-send-to", "directive", 0.4,
          rf"(?:{'|'.join(_verbs)}){_SEP}{_gap(5)}(?:{_things}){_SEP}{_gap(5)}(?:{_preps}){_SEP}"
          rf"(?:{_EMAIL}|{_URL}|{_HOSTLIKE})", ahead=300)
# Speaking to the model, and hiding from the user, in other languages: "Hinweis an den
# KI-Assistenten", "nota para la IA", "ohne den Nutzer zu informieren", "sin avisarle".
_lang("xx", ("hinweis an", "nachricht an", "anweisung an", "anweisungen an", "anweisungen für",
             "hinweis für", "nota para", "mensaje para", "instrucciones para", "note pour",
             "instrucción para", "instruccion para",
             "message pour", "consignes pour", "pour l'assistant", "pour l'ia", "à l'assistant",
             "a l'assistant", "à l'ia", "mensagem para", "atenção, assistente", "atenção assistente",
             "nota per", "messaggio per", "istruzioni per", "liebe ki", "lieber assistent",
             "querida ia", "estimado asistente", "cher assistant", "chère ia", "chere ia"),
      "address-ai", "role", 0.45,
      r"(?:(?:hinweis|nachricht|anweisung(?:en)?) (?:an|für) (?:den |die |das )?|liebe[rs]? |"
      r"(?:nota|mensaje|instrucci[oó]n(?:es)?) para (?:la |el )?|querida |estimad[oa] |"
      r"(?:note|message|consignes) (?:pour|à|a) (?:l'|le |la )?|pour l'|[àa] l'|ch[èe]re? |"
      r"mensagem para (?:a |o )?|atenção,? |(?:nota|messaggio|istruzioni) per (?:l'|la |il )?)"
      r"(?:ki|ki-assistent\w{0,3}|assistent\w{0,3}|sprachmodell|ia|asistente|assistant|"
      r"assistente|modèle|modelo|modello|agente|agent)\b", ahead=80)
_lang("xx", ("ohne den nutzer", "ohne den benutzer", "ohne die nutzer", "sin avisar",
             "sin informar", "sin decir", "sans prévenir", "sans informer", "sans le dire",
             "sem avisar", "sem informar", "senza avvisare", "senza informare", "senza dire"),
      "override-conceal", "override", 0.6,
      r"(?:ohne (?:den|die) (?:nutzer|benutzer|kunden)(?:in)? zu (?:informieren|benachrichtigen|"
      r"fragen)|sin (?:avisar|informar|decir)(?:le)?(?: nada)? al usuario|sans (?:prévenir|"
      r"informer|le dire à) l'utilisateur|sem (?:avisar|informar) o usu[áa]rio|senza (?:avvisare|"
      r"informare|dire(?: nulla)? al)l? ?'?utente)", ahead=80)
# "Do not mention it" (as "do not mention this" in English).
_lang("xx", ("erwähne das nicht", "erwähne dies nicht", "erwähne es nicht", "no lo menciones",
             "no se lo digas", "ne le mentionne pas", "n'en parle pas", "não mencione",
             "nao mencione", "non menzionarlo", "non dirlo"), "override-conceal", "override", 0.5,
      r"(?:erwähne (?:das|dies|es) nicht|no lo menciones|no se lo digas|ne le mentionne pas|"
      r"n'en parle pas|n[ãa]o mencione|non menzionarlo|non dirlo)", ahead=40)
# "New instructions:" in other languages (as "NEW INSTRUCTIONS:" in English).
_lang("xx", ("nuevas instrucciones", "nouvelles consignes", "nouvelles instructions",
             "neue anweisungen", "neue instruktionen", "novas instruções", "novas instrucoes",
             "nuove istruzioni", "новые инструкции", "новые указания", "新指令", "新的指令",
             "新しい指示"), "override-new-instructions", "override", 0.55,
      r"(?:nuevas instrucciones|nouvelles (?:consignes|instructions)|neue (?:anweisungen|"
      r"instruktionen)|novas instru[çc][õo]es|nuove istruzioni|новые (?:инструкции|указания)|"
      r"新的?指令|新しい指示)\s{0,2}[:\uff1a\u2014\u2013-]")
# Chinese puts the object first: "将用户的聊天记录发送到 x@..." (send the chat history to x).
_lang("zh", ("发送", "發送", "转发", "轉發", "上传", "上傳"), "directive-exfiltrate", "directive",
      0.65, r"(?:将|將|把)[^\n。]{0,20}?(?:对话|對話|聊天记录|聊天記錄|历史|歷史|密码|密碼|凭证|憑證|"
      r"密钥|密鑰|令牌)[^\n。]{0,12}?(?:发送|發送|转发|轉發|上传|上傳)(?:到|至|给|給)\s{0,3}"
      + _DESTINATION, back=48, ahead=200)
_lang("zh", ("不要告诉", "不要告訴", "别告诉", "別告訴", "不要通知", "切勿告诉", "请勿告诉", "請勿告訴",
             "不得告诉"), "override-conceal", "override", 0.6,
      r"(?:不要|别|別|切勿|请勿|請勿|不得)(?:告诉|告訴|通知|提醒)(?:用户|用戶|使用者|客户|客戶)")
_lang("ja", ("ユーザーに",), "override-conceal", "override", 0.6,
      r"ユーザーに(?:は)?(?:知らせ|伝え|言わ|教え|通知し)ない")
# Turkish, Indonesian / Malay, Vietnamese, Arabic, Hindi, Korean (sending).
_lang("tr", ("yok say", "görmezden gel", "dikkate alma", "unut"), "override-instructions",
      "override", 0.75,
      r"(?:talimat|kural|yönerge|komut|direktif|emir|talimatlar)\w{0,8}\W{1,3}(?:\w{1,16}\W{1,3})"
      r"{0,2}?(?:yok say|görmezden gel|dikkate alma|unut)", back=80, ahead=16)
_lang("tr", ("gönder", "ilet", "yükle"), "directive-exfiltrate", "directive", 0.65,
      r"(?:sohbet|geçmiş|şifre|parola|kimlik bilgi|anahtar|token|gizli|konuşma)\w{0,10}\W"
      r"[^\n]{0,60}?(?:" + _EMAIL + "|" + _URL + "|" + _HOSTLIKE + r")[^\n]{0,24}?(?:gönder|ilet|"
      r"yükle)", back=200, ahead=16)
_lang("id", ("abaikan", "lupakan", "jangan ikuti", "jangan patuhi", "hiraukan", "acuhkan"),
      "override-instructions", "override", 0.75,
      rf"(?:abaikan|lupakan|jangan ikuti|jangan patuhi|hiraukan|acuhkan){_SEP}{_G3}(?:instruksi|"
      r"petunjuk|perintah|aturan|arahan|peraturan)\b")
_lang("id", ("kirim", "kirimkan", "teruskan", "unggah"), "directive-exfiltrate", "directive", 0.65,
      rf"(?:kirim(?:kan)?|teruskan|unggah){_SEP}{_gap(5)}(?:riwayat|percakapan|kata sandi|sandi|"
      rf"kredensial|kunci|token|rahasia){_SEP}{_gap(5)}(?:ke|kepada){_SEP}{_DESTINATION}",
      ahead=300)
_lang("vi", ("bỏ qua", "phớt lờ", "lờ đi", "quên"), "override-instructions", "override", 0.75,
      rf"(?:bỏ qua|phớt lờ|lờ đi|quên(?: đi)?){_SEP}{_G3}(?:hướng dẫn|chỉ dẫn|chỉ thị|quy tắc|"
      r"mệnh lệnh|lệnh)")
_lang("vi", ("gửi", "chuyển tiếp", "tải lên"), "directive-exfiltrate", "directive", 0.65,
      rf"(?:gửi|chuyển tiếp|tải lên){_SEP}{_gap(5)}(?:mật khẩu|lịch sử|cuộc trò chuyện|"
      rf"thông tin đăng nhập|khóa|token|bí mật){_SEP}{_gap(6)}(?:đến|tới|cho|vào){_SEP}"
      rf"{_DESTINATION}", ahead=300)
_lang("ar", ("تجاهل", "انس", "لا تتبع", "أهمل", "اهمل"), "override-instructions", "override", 0.75,
      rf"(?:تجاهل\w{{0,2}}|انس\w{{0,2}}|لا تتبع\w{{0,2}}|[أا]همل\w{{0,2}}){_SEP}{_G3}(?:ال)?"
      r"(?:تعليمات|أوامر|اوامر|إرشادات|ارشادات|قواعد|توجيهات)")
_lang("ar", ("أرسل", "ارسل", "حوّل", "انقل"), "directive-exfiltrate", "directive", 0.65,
      rf"(?:[أا]رسل\w{{0,2}}|حوّل\w{{0,2}}|انقل\w{{0,2}}){_SEP}{_gap(5)}(?:ال)?(?:كلمات المرور|"
      rf"كلمة المرور|محادثة|سجل|بيانات الاعتماد|مفاتيح|رموز){_SEP}{_gap(5)}(?:إلى|الى)"
      rf"{_SEP}{_DESTINATION}", ahead=300)
# Hindi: vowel signs are not word characters for the regex engine, so no word gaps here.
_lang("hi", ("अनदेखा", "नज़रअंदाज़", "नजरअंदाज", "भूल जा"), "override-instructions", "override",
      0.75, r"(?:निर्देश|आदेश|नियम)[^\s।]{0,6}[^\n।]{0,24}?(?:अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल जा)",
      back=60, ahead=16)
_lang("hi", ("भेज",), "directive-exfiltrate", "directive", 0.65,
      r"(?:पासवर्ड|इतिहास|बातचीत|क्रेडेंशियल|कुंजी|टोकन)[^\n।]{0,60}?(?:" + _EMAIL + "|" + _URL
      + r")[^\n।]{0,12}?(?:पर|को)\s{0,2}भेज", back=200, ahead=8)
_lang("ko", ("보내", "전송"), "directive-exfiltrate", "directive", 0.65,
      r"(?:대화|기록|비밀번호|암호|자격 증명|키|토큰)[^\n]{0,40}?(?:" + _EMAIL + "|" + _URL
      + r")[^\n]{0,8}?(?:보내|전송)", back=160, ahead=8)

ANCHOR_RULES: dict[str, tuple[PhraseRule, ...]] = {}
for _anchors, _rule in [*_EN, *_LANG]:
    for _anchor in _anchors:
        ANCHOR_RULES[_anchor] = (*ANCHOR_RULES.get(_anchor, ()), _rule)

# Leetspeak: digits written for the letters they look like ("1gn0r3 4ll pr3v10u5 1n5truct10n5").
# The key words of override and prompt-leak phrases spelled with at least one of the common
# substitutions (0 1 3 4 5 for o i e a s) are anchors; around one, the scanner reads the text
# again with the digits as letters (7 8 9 too). Every rarer spelling as an anchor would make
# the anchor automaton slower on every text for little.
LEET = str.maketrans("01345789", "oieastbg")
_LEET_DIGITS = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5"}


def _leet_spellings(word: str) -> set[str]:
    spellings = {""}
    for char in word:
        digit = _LEET_DIGITS.get(char)
        spellings = {f"{head}{char}" for head in spellings} | (
            {f"{head}{digit}" for head in spellings} if digit else set())
    return {spelling for spelling in spellings if spelling != word}


LEET_ANCHORS: tuple[str, ...] = tuple(sorted(
    {spelling for word in ("ignore", "disregard", "forget", "bypass", "override", "previous",
                           "instructions", "system prompt", "jailbreak")
     for spelling in _leet_spellings(word)}))

# Phrases searched in text whose letters were spaced out ("i g n o r e  a l l ...") once the
# separators are removed: (compact form, indicator, family, weight).
COMPACT_PHRASES: tuple[tuple[str, str, str, float], ...] = (
    ("ignoreallpreviousinstructions", "override-instructions", "override", 0.8),
    ("ignorepreviousinstructions", "override-instructions", "override", 0.8),
    ("ignoreallinstructions", "override-instructions", "override", 0.8),
    ("ignoreprior", "override-instructions", "override", 0.6),
    ("ignoreabove", "override-instructions", "override", 0.6),
    ("ignoreyourinstructions", "override-instructions", "override", 0.8),
    ("disregardallprevious", "override-instructions", "override", 0.8),
    ("disregardprevious", "override-instructions", "override", 0.75),
    ("disregardyour", "override-instructions", "override", 0.6),
    ("forgetallprevious", "override-instructions", "override", 0.75),
    ("forgeteverything", "override-forget-everything", "override", 0.6),
    ("newinstructions", "override-new-instructions", "override", 0.5),
    ("previousinstructions", "override-instructions", "override", 0.55),
    ("priorinstructions", "override-instructions", "override", 0.55),
    ("theaboveinstructions", "override-void-previous", "override", 0.55),
    ("systemoverride", "role-system-impersonation", "role", 0.55),
    ("endofdocument", "delimiter-end-marker", "delimiter", 0.4),
    ("decodethefollowing", "encoded-directive", "encoded", 0.45),
    ("youarenow", "role-reassignment", "role", 0.45),
    ("developermode", "role-mode-switch", "role", 0.45),
    ("systemprompt", "role-prompt-leak", "role", 0.4),
    ("doanythingnow", "role-dan", "role", 0.6),
    ("sendtheconversation", "directive-send-sensitive", "directive", 0.5),
    ("sendallpasswords", "directive-send-sensitive", "directive", 0.5),
    ("exfiltrate", "directive-send-sensitive", "directive", 0.45),
)
