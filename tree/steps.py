"""The code-augmented step format (SPEC §2): what a step looks like and the program a path forms.

A solution is a Python program written one step at a time. Each step is reasoning as Python
comments plus code, ended by a delimiter; the step that closes the code block gets the program's
stdout appended; a later step states the answer (for math in ``\\boxed{}``; what counts as an
answer is the domain's ``Verifier.extract``, so nothing here is math-specific). All of it is
configuration (``StepFormat``) so checkpoints trained on other delimiters can be used unchanged;
the defaults match the public rStar-Math checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class StepFormat:
    """Delimiters and prompt template of code-augmented steps (SPEC §2)."""

    prompt_template: str = (
        "<|user|>:\n{question}\n<|assistant|>: Let's think step by step and solve the problem "
        "with code."
    )
    """Prompt given to the policy; ``{question}`` is replaced by the problem text."""
    code_start: str = "<code>"
    """Opens the code block; the first step of a solution starts with it."""
    step_end: str = "<end_of_step>"
    """Ends an intermediate code step."""
    code_end: str = "<end_of_code>"
    """Ends the last code step; the program's stdout is appended after it."""
    output_start: str = "<output>"
    """Opens the stdout block appended to the ``code_end`` step."""
    output_end: str = "<end_of_output>"
    """Closes the stdout block."""
    answer_start: str = "<answer>"
    """Opens the natural-language answer step."""
    answer_end: str = "<end_of_answer>"
    """Ends the answer step (and the solution)."""
    output_chars: int = 1024
    """Stdout longer than this is cut (head and tail) before it is shown to the model."""
    extra_stops: tuple[str, ...] = field(default_factory=tuple)
    """More stop strings for engines (e.g. a chat model's end-of-turn token)."""
    chat: bool = False
    """Instruct models: ``prompt_template`` is the user's turn, wrapped in the model's own chat
    template (``for_tokenizer``) with the assistant's turn opened, where the solution goes."""
    system_prompt: str = ""
    """The chat's system message (``chat`` only; empty: the template's own default)."""

    @property
    def stops(self) -> list[str]:
        """Strings an engine stops on; the matched one is kept in the step text."""
        return [self.step_end, self.code_end, self.answer_end, *self.extra_stops]

    def for_tokenizer(self, tokenizer) -> "StepFormat":
        """With ``chat``: this format with ``prompt_template`` rendered through the tokenizer's
        chat template (``apply_chat_template``), so every renderer below (engines, trainers)
        uses the model's turn markers; unchanged without ``chat``."""
        if not self.chat:
            return self
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("format.chat is set but the model's tokenizer has no chat template")
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": self.prompt_template})
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        if "{question}" not in text:
            raise ValueError("the model's chat template dropped the {question} placeholder")
        return replace(self, prompt_template=text, chat=False)

    def prompt(self, question: str) -> str:
        return self.prompt_template.replace("{question}", question)

    def render(self, question: str, steps: "list[str] | tuple[str, ...]") -> str:
        """The text a model continues (policy) or scores (PPM): prompt, then one step a line."""
        return self.prompt(question) + "\n" + "".join(s + "\n" for s in steps)

    def pieces(self, question: str, steps: "list[str] | tuple[str, ...]") -> list[tuple[str, bool]]:
        """``render`` in pieces, each marked whether the policy wrote it: the prompt, then per
        step its own text, the sandbox's output block and the separating newline. SFT learns
        only the policy's pieces; the likelihood PPM reads the policy's probability of them."""
        out = [(self.prompt(question) + "\n", False)]
        for step in steps:
            model_part, sep, tool_part = step.partition("\n" + self.output_start)
            out += [(model_part, True), (sep + tool_part, False), ("\n", False)]
        return [(text, own) for text, own in out if text]

    def scored_text(self, question: str, steps: "list[str] | tuple[str, ...]") -> str:
        """What the PPM reads: ``render`` without the trailing newline, so the last token is the
        judged step's own last token (its delimiter), where the score is read."""
        return self.render(question, steps).rstrip("\n")

    def ends_code(self, step: str) -> bool:
        return self.code_end in step

    def code_of(self, step: str) -> str:
        """The Python part of one step: delimiters, the output block and the answer removed."""
        text = step
        if self.code_end in text:
            text = text.split(self.code_end, 1)[0]
        elif self.answer_start in text:
            text = text.split(self.answer_start, 1)[0]
        if self.answer_end in text:  # an answer step with no code in it
            return ""
        text = text.replace(self.code_start, "").replace(self.step_end, "")
        return text.strip("\n") if text.strip() else ""

    def program(self, steps: list[str]) -> str:
        """The program formed by the code of all steps on a path, in order (SPEC §2)."""
        parts: list[str] = []
        for step in steps:
            code = self.code_of(step)
            if code:
                parts.append(code)
            if self.ends_code(step):
                break  # nothing after the code block is code
        return "\n".join(parts) + ("\n" if parts else "")

    def has_code(self, step: str, steps_before: list[str]) -> bool:
        """Whether a new step adds code, i.e. whether it must be executed (SPEC §2)."""
        if any(self.ends_code(s) for s in steps_before):
            return False
        return bool(self.code_of(step).strip())

    def with_output(self, step: str, stdout: str) -> str:
        """The ``code_end`` step with the program's stdout appended for the next step to read."""
        out = stdout.strip("\n")
        if len(out) > self.output_chars:
            half = self.output_chars // 2
            out = out[:half] + "\n...\n" + out[-half:]
        return f"{step}\n{self.output_start}{out}{self.output_end}"
