"""A scripted dialogue in NeMo-Gym's style, graded against an expected state.

    convo-sim run --script scenarios/examples/nemo_dialogue.py

`DIALOGUE` is what the user says, in order (a `ScriptedUser` says the stop
token when it runs out). `EXPECTED_STATE` is NeMo-Gym's `exp_cal_state`:
durations, constraints and the working window per event id; the final
verifier grades the assistant's last calendar against it.
"""

from __future__ import annotations

DIALOGUE = [
    'Hi! Could you add a new event titled "Quarterly review" (event id: 0)? '
    "It's a 60-minute slot.",
    "Please make sure the Quarterly review (event id: 0) wraps up by 1:45 pm.",
    'Also add "Gym session" (event id: 1) for about 45 minutes, starting at 2pm or later.',
    'Could you put in a 30-minute "Call with Priya" (event id: 2) at 11:15am?',
    "Thanks, glad the review wraps up by 1:45 pm.",
]

EXPECTED_STATE = {
    "0": {"event_id": 0, "duration": 60, "constraint": "before 1:45pm",
          "min_time": "10:00", "max_time": "16:00"},
    "1": {"event_id": 1, "duration": 45, "constraint": "after 2pm",
          "min_time": "10:00", "max_time": "16:00"},
    "2": {"event_id": 2, "duration": 30, "constraint": "at 11:15am",
          "min_time": "10:00", "max_time": "16:00"},
}  # fmt: skip

MAX_TURNS = 10
