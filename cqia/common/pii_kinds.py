"""The kinds of PII the registry looks for: their names, mask tokens, labels and the fields read.

Data shared by the rules that find them (cqia/ingest/pii.py, cqia/ingest/rules.py) and by the
dataset card that describes them (the merge stage), so the card does not depend on the patterns.
"""

from cqia.common.record import TEXT_FIELDS

KINDS = ("email", "id_card", "phone", "qq")
ACTIONS = ("mask", "reject", "keep")
MASKS = {"email": "[EMAIL]", "id_card": "[ID_CARD]", "phone": "[PHONE]", "qq": "[QQ]"}
LABELS = {"email": "an e-mail address", "id_card": "a 身份证号", "phone": "a phone number", "qq": "a QQ number"}
PII_FIELDS = (*TEXT_FIELDS, "metadata", "copyright")
