"""Services of data products, one module per job: ``sources`` (data sources), ``definitions``
(product admin: define, publish, grant) and ``access`` (the agent's ``decision_read`` /
``decision_write``). ``products.config`` applies config files; ``products.demo`` seeds the demo.
"""
