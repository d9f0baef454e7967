"""The text OptoPrime and OPRO send: system prompts and the answer format."""

from __future__ import annotations

SECTIONS = ("Instruction", "Code", "Documentation", "Variables", "Constraints", "Inputs", "Others",
            "Outputs", "Feedback")
MEMORY = "Past attempts"
NO_FEEDBACK = "(no feedback was given; call backward before step)"
PROBLEMS = "Problems with your previous answer"

DEFAULT_INSTRUCTION = (
    "Change the values of the variables in #Variables so that the output improves according to "
    "#Feedback.")

OPTOPRIME_SYSTEM = """You improve a program by changing its trainable variables.

You are shown a report of one run of the program:
#Instruction: the goal.
#Code: the operations that ran, one per line, in order (output = operation(argument=value name, ...)).
#Documentation: what each operation does.
#Variables: the trainable variables and their current values; you may change these.
#Constraints: rules a new value must obey.
#Inputs: values the program read that you cannot change.
#Others: intermediate values computed during the run.
#Outputs: the result of the run.
#Feedback: what was good or bad about the result.
#Past attempts (if any): earlier values of the variables and the feedback they got.
A section may say "(not shown)" when it is withheld from you. Long runs of similar steps are condensed into
one line giving their range and the kinds of feedback they had.

Work out from the trace and the feedback which variables caused the problem and how to change them.
""" + """
Answer with one JSON object and nothing else:
{"reasoning": "<how the trace and feedback lead to your change>",
 "suggestion": {"<variable name>": <new value>}}
Use variable names exactly as written in #Variables (for example __code0). A code variable's new value
is a string holding the complete function definition, with the same function name and arguments.
Numbers stay numbers and lists stay lists. Leave out variables you keep; an empty "suggestion"
means no change."""

OPRO_SYSTEM = """You improve a solution by proposing new values for its variables.

You are shown the goal, the current values of the variables with the feedback they received, and
earlier values with their feedback. Propose values that should do better than all of them.

Answer with one JSON object and nothing else:
{"reasoning": "<why these values should do better>",
 "suggestion": {"<variable name>": <new value>}}
Use the variable names exactly as given. A code variable's new value is a string holding the complete
function definition, with the same function name and arguments. Leave out variables you keep."""
