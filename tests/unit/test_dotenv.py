from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.loader.dotenv import DotenvValue, parse_dotenv
from composer.loader.errors import LoadError
from composer.loader.nodes import Mark


def values(text: str, lookup=None, **kwargs) -> dict[str, str]:
    return {k: v.value for k, v in parse_dotenv(text, ".env", lookup, **kwargs).items()}


def test_plain_export_blank_lines_and_comments():
    text = "# header\n\nA=1\n  export B=2\n\t# indented comment\nC = 3\nD: 4\nexport=5\n"
    assert values(text) == {"A": "1", "B": "2", "C": "3", "D": "4", "export": "5"}


def test_unquoted_values_are_trimmed_and_lose_inline_comments():
    text = "A=  spaced out  \nB=x # comment\nC=x#not-a-comment\nD=a'b\"c\nE=x\t#tab is no comment\n"
    assert values(text) == {
        "A": "spaced out",
        "B": "x",
        "C": "x#not-a-comment",
        "D": "a'b\"c",
        "E": "x\t#tab is no comment",
    }


def test_empty_values_and_bare_keys():
    text = "EMPTY=\nQUOTED_EMPTY=''\nFROM_SHELL\nMISSING\nLAST_FROM_SHELL"
    shell = {"FROM_SHELL": "s", "LAST_FROM_SHELL": "t"}
    result = parse_dotenv(text, ".env", shell.get)
    assert {k: v.value for k, v in result.items()} == {
        "EMPTY": "",
        "QUOTED_EMPTY": "",
        "FROM_SHELL": "s",
        "LAST_FROM_SHELL": "t",
    }
    # A bare key is marked where the key is; an empty value just after '='.
    assert result["FROM_SHELL"].mark == Mark(".env", 3, 1)
    assert result["EMPTY"].mark == Mark(".env", 1, 7)


def test_single_quotes_are_literal():
    text = "A='${HOME} \\n $$ # kept'\nB='it\\'s'\n"
    assert values(text, {"HOME": "/root"}.get) == {"A": "${HOME} \\n $$ # kept", "B": "it's"}


def test_double_quotes_unescape_then_interpolate():
    text = (
        'A="line1\\nline2\\ttab \\\\ back \\" quote"\n'
        'B="${X} and ${UNSET:-d}"\n'
        'C="\\$X is literal, so is $$X"\n'
        'D="\\0101\\x41\\q"\n'
        'E="a # not a comment" # a comment\n'
    )
    assert values(text, {"X": "x"}.get) == {
        "A": 'line1\nline2\ttab \\ back " quote',
        "B": "x and d",
        "C": "$X is literal, so is $X",
        "D": "A\\x41\\q",  # only \0ooo octal; other unknown escapes stay as written
        "E": "a # not a comment",
    }


def test_multi_line_quoted_values_and_marks_after_them():
    text = "A=\"one\ntwo\"\nB='x\ny'\nC=after\n"
    result = parse_dotenv(text, ".env")
    assert result["A"] == DotenvValue("one\ntwo", Mark(".env", 1, 3))
    assert result["B"].value == "x\ny"
    assert result["C"] == DotenvValue("after", Mark(".env", 5, 3))


def test_unquoted_values_interpolate_from_lookup_then_earlier_keys_then_fallback():
    text = "A=a\nB=${A}-$SHELL_ONLY-${LATER:-none}-$EARLIER_FILE\nLATER=l\nA2=${A:+set}\n"
    shell = {"SHELL_ONLY": "s", "A": "shell-wins"}
    fallback = {"EARLIER_FILE": "e", "A": "fallback-loses"}.get
    assert values(text, shell.get, fallback=fallback) == {
        "A": "a",
        "B": "shell-wins-s-none-e",
        "LATER": "l",
        "A2": "set",
    }


def test_earlier_keys_beat_the_fallback():
    assert values("A=mine\nB=$A\n", fallback={"A": "older"}.get)["B"] == "mine"


def test_utf8_bom_and_crlf_line_ends():
    text = '\ufeffA=1\r\nB="two"\r\nC\r\n'
    result = parse_dotenv(text, ".env", {"C": "c"}.get)
    assert {k: v.value for k, v in result.items()} == {"A": "1", "B": "two", "C": "c"}
    assert result["A"].mark == Mark(".env", 1, 3)


def test_unicode_keys_and_punctuation_allowed_by_compose():
    assert values("ÄPFEL=1\nA.B-C[0]=2\n") == {"ÄPFEL": "1", "A.B-C[0]": "2"}


def test_later_keys_win_within_a_file():
    assert values("A=1\nA=2\n") == {"A": "2"}


@pytest.mark.parametrize(
    ("text", "mark", "message"),
    [
        ("A=1\nB C=2\n", Mark(".env", 2, 1), "variable name 'B C' contains a space"),
        ("A=1\n  B$=2\n", Mark(".env", 2, 4), "unexpected character '$' in variable name 'B$=2'"),
        ("=x\n", Mark(".env", 1, 1), "missing variable name before '='"),
        ("A=1\nB='abc\nC=3\n", Mark(".env", 2, 3), "unterminated quoted value (no closing ')"),
        ('A="x" y\n', Mark(".env", 1, 7), "unexpected text after the closing quote"),
        ("A=${\n", Mark(".env", 1, 3), "invalid interpolation format"),
        ('A="${NEED:?please}"\n', Mark(".env", 1, 3), "required variable NEED is missing"),
    ],
)
def test_malformed_lines_name_file_line_and_column(text, mark, message):
    with pytest.raises(LoadError) as info:
        parse_dotenv(text, ".env")
    (problem,) = info.value.problems
    assert problem.mark == mark
    assert problem.message.startswith(message)


def test_every_malformed_line_is_reported_at_once():
    text = "GOOD=1\nBAD KEY=2\nALSO=ok\nx!=3\nQ='open\n"
    with pytest.raises(LoadError) as info:
        parse_dotenv(text, "dev.env")
    assert [str(p.mark) for p in info.value.problems] == [
        "dev.env:2:1",
        "dev.env:4:2",
        "dev.env:5:3",
    ]
    assert info.value.problems[2].path == ("Q",)


def test_comment_after_closing_quote_is_fine():
    assert values("A='x'   # note\nB=\"y\"#tight\n") == {"A": "x", "B": "y"}


def test_the_full_escape_set_of_double_quotes():
    text = 'KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z\\0400Z\\u12e4"\n'
    assert values(text)["KEY"] == "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ\\0400Z\\u12e4"


def test_unset_variables_in_values_are_reported_with_the_value_mark():
    heard = []
    parse_dotenv(
        "A=$NOPE\nB='$QUIET'\nC=\"${NOPE}${ALSO}\"\nD=${X:-ok}\n",
        ".env",
        on_unset=lambda name, mark: heard.append((name, str(mark))),
    )
    assert heard == [("NOPE", ".env:1:3"), ("NOPE", ".env:3:3"), ("ALSO", ".env:3:3")]


_DOTENV_ALPHABET = "AB_x= \t\n#'\"\\${}:-?+.export0é\r\ufeff"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_DOTENV_ALPHABET, max_size=60))
def test_any_text_parses_or_fails_with_located_problems(text):
    try:
        result = parse_dotenv(text, "f.env", {"x": "1"}.get)
    except LoadError as exc:
        assert exc.problems and all(p.mark and p.mark.file == "f.env" for p in exc.problems)
        return
    for key, entry in result.items():
        assert key and isinstance(entry.value, str) and entry.mark.line >= 1


def test_a_hash_that_starts_an_unquoted_value_is_part_of_it():
    assert values("A=#x\nB=  #y # z\n") == {"A": "#x", "B": "#y"}
