"""Services of agents and people's credentials: ``registry`` (agents, their keys and key
authentication), ``tokens`` (personal API tokens) and ``twofactor`` (TOTP enrolment and sign-in).
"""
