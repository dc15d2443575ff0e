"""Services of approvals, one module per job: ``requests`` (requesting, voting, resolution,
expiry, cancellation), ``email_links``, ``outbox`` (delivery attempts) and ``channels`` (the senders),
``integrations`` (webhook endpoints and Slack apps), ``credentials`` (webhook credentials) and
``routes``. ``approvals.config`` applies config files; ``approvals.demo`` seeds the demo.
"""
