"""Services of policies, one module per job: ``authoring`` (definitions, drafts, publishing, grants),
``evaluation`` (evaluation inside a decision, ``fail_closed``, ``decision_evaluate``) and
``console`` (the test console: test and replay). ``policies.config`` applies config files;
``policies.demo`` seeds the demo.
"""
