"""The run loop: a drain task claims a conversation and runs its turns one at a time (``drain``) against
OpenAI (``upstream``) with pure retry decisions (``policy``); the reaper re-wakes what was lost; shutdown and
the crash points of the recovery tests."""
