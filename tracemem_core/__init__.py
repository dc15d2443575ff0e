"""The ground floor: what every app uses (errors, actor, validation, redaction, ids, crypto, time,
env readers, parsers, cache and outage guards, database roles). It imports no app and no door."""
