"""Multi-turn conversations as a ranker's source and candidates, as llm-blender's `compare_conversations`.

A conversation is a list of {"role", "content"} turns alternating user, assistant, user, assistant, ...
(roles "USER"/"ASSISTANT" as llm-blender writes them; "user"/"assistant" as chat templates do). Two
conversations compared share their user turns. The source is a fixed instruction and the user turns with
numbered gaps; each candidate is that conversation's assistant turns, numbered the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CONVERSATION_INSTRUCTION = (
    # Verbatim llm-blender's (spelling included): PairRM saw this text in training.
    "Finish the following coversation in each i-th turn by filling in <Response i> with your response."
)


def _check(conversation: Sequence[Mapping[str, str]], where: str) -> None:
    if not isinstance(conversation, Sequence) or not conversation or len(conversation) % 2:
        raise ValueError(
            f"{where}: a conversation is a non-empty list of turns, user then assistant (even length)"
        )
    for k, turn in enumerate(conversation):
        expected = "USER" if k % 2 == 0 else "ASSISTANT"
        if not isinstance(turn, Mapping) or not isinstance(turn.get("content"), str):
            raise ValueError(f"{where}, turn {k}: a turn is {{'role': ..., 'content': str}}")
        if str(turn.get("role", "")).upper() != expected:
            raise ValueError(f"{where}, turn {k}: role {turn.get('role')!r}, expected {expected.lower()}")


def conversation_pairs(
    conversations_a: Sequence[Sequence[Mapping[str, str]]],
    conversations_b: Sequence[Sequence[Mapping[str, str]]],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(instructions, inputs, candidates_a, candidates_b) for comparing conversations pairwise.

    Example: [user "hi", assistant "hello"] gives the input "USER: hi\\nAssistant: <Response 1>" and the
    candidate "<Response 1>: hello".
    """
    if len(conversations_a) != len(conversations_b):
        raise ValueError(f"{len(conversations_a)} conversations a but {len(conversations_b)} conversations b")
    inputs, texts_a, texts_b = [], [], []
    for k, (a, b) in enumerate(zip(conversations_a, conversations_b, strict=True)):
        _check(a, f"conversations_a[{k}]")
        _check(b, f"conversations_b[{k}]")
        if len(a) != len(b) or any(a[i]["content"] != b[i]["content"] for i in range(0, len(a), 2)):
            raise ValueError(f"conversation {k}: a and b must have the same user turns")
        inputs.append(
            "\n".join(
                f"USER: {a[i]['content']}\nAssistant: <Response {i // 2 + 1}>" for i in range(0, len(a), 2)
            )
        )
        for turns, texts in ((a, texts_a), (b, texts_b)):
            texts.append(
                "\n".join(f"<Response {i // 2 + 1}>: {turns[i]['content']}" for i in range(1, len(turns), 2))
            )
    return [CONVERSATION_INSTRUCTION] * len(inputs), inputs, texts_a, texts_b
