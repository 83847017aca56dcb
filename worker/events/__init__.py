"""Events: the models parley publishes (``models``), reading a conversation's durable stream (``log``) and the
global replies stream (``replies``)."""
