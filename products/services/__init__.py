"""Services of data products, one module per job: ``sources`` (data sources), ``definitions``
(product admin: define, publish, grant) and ``reads`` / ``writes`` (the agent's ``decision_read`` /
``decision_write``, sharing ``access``: grant, purpose, attached policies). ``products.config`` applies config files; ``products.demo`` seeds the demo.
"""
