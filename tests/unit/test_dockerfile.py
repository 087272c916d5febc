"""The Dockerfile parser and variable substitution: each feature, each error at its line."""

from __future__ import annotations

import pytest

from runtime.images.build.dockerfile import (
    DockerfileError,
    arg_declarations,
    expand,
    expand_words,
    key_values,
    parse,
    parse_duration,
    parse_onbuild,
)


def only(text: str):
    """The instructions of a one-stage Dockerfile."""
    return parse(text).stages[0].instructions


def test_stages_names_and_lines():
    df = parse("FROM scratch AS Build\nRUN true\n\nfrom build\nCMD x\n")
    assert [(s.base, s.name, s.line) for s in df.stages] == [
        ("scratch", "build", 1),
        ("build", None, 4),
    ]
    assert df.stage_index("build") == 0
    assert df.stage_index("1") == 1
    assert df.stage_index("nope") is None
    assert df.stages[1].instructions[0].keyword == "CMD"
    assert df.stages[1].instructions[0].line == 5


def test_arg_before_from_is_a_meta_arg():
    df = parse("ARG V=1\nARG B\nFROM img:$V\n")
    assert [i.args for i in df.meta_args] == ["V=1", "B"]
    assert df.stages[0].base == "img:$V"


def test_continuations_skip_comments_and_blank_lines():
    (run,) = only("FROM scratch\nRUN echo a \\\n  # inner comment\n\n  && echo b\n")
    assert run.args == "echo a   && echo b"
    assert (run.line, run.end_line) == (2, 5)


def test_escape_directive_backtick():
    df = parse("# escape=`\nFROM scratch\nCOPY a `\n  c:\\dir\\\n")
    assert df.escape == "`"
    (copy,) = df.stages[0].instructions
    assert copy.args == "a   c:\\dir\\"


def test_directive_only_at_the_top():
    df = parse("FROM scratch\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\"
    assert df.stages[0].instructions[0].args == "a  b"


def test_bad_escape_directive():
    with pytest.raises(DockerfileError) as err:
        parse("# escape=x\nFROM scratch\n", "df")
    assert (err.value.file, err.value.line) == ("df", 1)


def test_comments_are_dropped():
    assert [i.keyword for i in only("# c\nFROM scratch\n  # indented\nUSER 1\n")] == ["USER"]


def test_exec_and_shell_forms():
    cmd, entry, run, bad = only(
        'FROM scratch\nCMD ["a", "b c"]\nENTRYPOINT echo hi\nRUN ["sh","-c","x"]\nCMD [not json\n'
    )
    assert cmd.exec_form == ["a", "b c"]
    assert entry.exec_form is None and entry.args == "echo hi"
    assert run.exec_form == ["sh", "-c", "x"]
    assert bad.exec_form is None and bad.args == "[not json"


def test_flags_are_parsed_and_checked():
    (copy,) = only("FROM scratch\nCOPY --from=build --chown=1:2 --chmod=640 --link a b\n")
    assert copy.flags == {"from": "build", "chown": "1:2", "chmod": "640", "link": "true"}
    assert copy.args == "a b"
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\n\nCOPY --frm=x a b\n")
    assert err.value.line == 3 and "--frm" in err.value.message
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nCOPY --from a b\n")
    assert err.value.line == 2 and "needs a value" in err.value.message


def test_from_platform_flag():
    df = parse("FROM --platform=linux/amd64 scratch AS a\n")
    assert df.stages[0].platform == "linux/amd64"


def test_run_heredoc():
    (run, user) = only("FROM scratch\nRUN <<EOF\necho one\n  echo two\nEOF\nUSER x\n")
    assert run.heredocs[0].name == "EOF"
    assert run.heredocs[0].content == "echo one\n  echo two\n"
    assert run.heredocs[0].expand
    assert (run.line, run.end_line, user.line) == (2, 5, 6)


def test_copy_heredocs_quoted_and_tab_stripped():
    (copy,) = only("FROM scratch\nCOPY <<'A' <<-B /dst/\n$X\nA\n\tindented\n\tB\n")
    a, b = copy.heredocs
    assert (a.name, a.content, a.expand) == ("A", "$X\n", False)
    assert (b.name, b.content, b.expand) == ("B", "indented\n", True)


def test_unterminated_heredoc():
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nRUN true\nRUN <<EOF\necho\n")
    assert err.value.line == 3 and "EOF" in err.value.message


def test_heredoc_only_for_run_copy_add():
    (label,) = only("FROM scratch\nLABEL a=<<EOF\n")
    assert label.heredocs == ()


def test_unknown_instruction_has_its_line():
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nRUN a\nFOO bar\n", "my/Dockerfile")
    assert str(err.value) == "my/Dockerfile:3: unknown instruction: FOO"


def test_instruction_before_from():
    with pytest.raises(DockerfileError) as err:
        parse("ARG a\nRUN x\nFROM scratch\n")
    assert err.value.line == 2


def test_no_from():
    with pytest.raises(DockerfileError) as err:
        parse("# nothing\n")
    assert "no FROM" in err.value.message


def test_missing_argument():
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nWORKDIR\n")
    assert err.value.line == 2


def test_shell_needs_json():
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nSHELL /bin/bash -c\n")
    assert err.value.line == 2 and "JSON" in err.value.message


def test_duplicate_stage_name_and_bad_from():
    with pytest.raises(DockerfileError) as err:
        parse("FROM a AS x\nFROM b AS x\n")
    assert err.value.line == 2
    with pytest.raises(DockerfileError) as err:
        parse("FROM a b c d\n")
    assert err.value.line == 1


def test_onbuild_checked_at_its_line():
    (onbuild,) = only("FROM scratch\nONBUILD RUN echo hi\n")
    inner = parse_onbuild(onbuild)
    assert (inner.keyword, inner.args) == ("RUN", "echo hi")
    with pytest.raises(DockerfileError) as err:
        parse("FROM scratch\nUSER a\nONBUILD FROM x\n")
    assert err.value.line == 3


# ---------------------------------------------------------------- substitution

ENV = {"A": "1", "EMPTY": "", "P": "/srv"}.get


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "1"),
        ("${A}x", "1x"),
        ("$Ax", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:+yes}", "yes"),
        ("${EMPTY:+yes}", ""),
        ("${EMPTY+yes}", "yes"),
        ("${UNSET:-$P/x}", "/srv/x"),
        ("\\$A", "$A"),
        ("'$A'", "$A"),
        ('"$A"', "1"),
        ("a$", "a$"),
        ("$1", "$1"),
        ("a b  c", "a b  c"),
    ],
)
def test_expand(text, expected):
    assert expand(text, ENV) == expected


def test_expand_without_quote_removal_keeps_quotes():
    assert expand("'$A' \"x\"", ENV, quotes=False) == "'1' \"x\""


def test_expand_required():
    assert expand("${A:?need A}", ENV) == "1"
    with pytest.raises(ValueError, match="need B"):
        expand("${B:?need B}", ENV)


def test_expand_errors():
    with pytest.raises(ValueError, match="missing"):
        expand("${A", ENV)
    with pytest.raises(ValueError, match="bad substitution"):
        expand("${}", ENV)
    with pytest.raises(ValueError, match="quote"):
        expand('"open', ENV)


def test_expand_words_splits_outside_quotes():
    assert expand_words('a "$A b"  \'c d\' "" $EMPTY', ENV) == ["a", "1 b", "c d", "", ""]
    assert expand_words("x\\ y", ENV) == ["x y"]


def test_expand_with_backtick_escape():
    assert expand("`$A", ENV, "`") == "$A"


def test_key_values_both_forms():
    (env1, env2, label) = only(
        'FROM scratch\nENV A=1 B="two words" C=${A}x\nENV OLD some value\nLABEL "k.x"=v\n'
    )
    lookup = {"A": "9"}.get
    assert key_values(env1, lookup, "\\", "Dockerfile") == [
        ("A", "1"),
        ("B", "two words"),
        ("C", "9x"),
    ]
    assert key_values(env2, lookup, "\\", "Dockerfile") == [("OLD", "some value")]
    assert key_values(label, lookup, "\\", "Dockerfile") == [("k.x", "v")]


def test_key_values_errors_name_the_line():
    (_, env) = only("FROM scratch\nUSER a\nENV A=1 B\n")
    with pytest.raises(DockerfileError) as err:
        key_values(env, ENV, "\\", "Dockerfile")
    assert err.value.line == 3
    (env,) = only("FROM scratch\nENV LONE\n")
    with pytest.raises(DockerfileError):
        key_values(env, ENV, "\\", "Dockerfile")


def test_substitution_error_names_the_line():
    (env,) = only("FROM scratch\nENV A=${B\n")
    with pytest.raises(DockerfileError) as err:
        key_values(env, ENV, "\\", "Dockerfile")
    assert err.value.line == 2


def test_arg_declarations():
    (arg,) = only("FROM scratch\nARG a b=2 c=$A\n")
    assert arg_declarations(arg, ENV, "\\", "Dockerfile") == [("a", None), ("b", "2"), ("c", "1")]
    (bad,) = only("FROM scratch\nARG 1x\n")
    with pytest.raises(DockerfileError):
        arg_declarations(bad, ENV, "\\", "Dockerfile")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("0", 0), ("1h", 3600)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------- metadata-only builds
# FROM scratch with no filesystem step needs no mount and no root: the image config
# semantics are checked here, the file system ones in tests/integration/test_build.py.


def config_of(tmp_path, text: str, **kwargs) -> dict:
    from runtime.images.build import build
    from runtime.images.store import ImageStore

    (tmp_path / "ctx").mkdir(exist_ok=True)
    store = ImageStore(tmp_path / "root")
    image = build(tmp_path / "ctx", inline=text, store=store, **kwargs)
    return image.config


def test_meta_args_need_redeclaring_in_a_stage(tmp_path):
    text = "ARG V=1\nFROM scratch\nLABEL before=${V:-unset}\nARG V\nLABEL after=$V\n"
    assert config_of(tmp_path, text)["config"]["Labels"] == {"before": "unset", "after": "1"}
    labels = config_of(tmp_path, text, args={"V": "9"})["config"]["Labels"]
    assert labels == {"before": "unset", "after": "9"}


def test_env_wins_over_arg_and_builds_on_itself(tmp_path):
    text = "FROM scratch\nARG X=arg\nENV X=env\nENV Y=${X}-y PATH=/bin:$PATH\nLABEL x=$X\n"
    config = config_of(tmp_path, text)["config"]
    assert config["Labels"] == {"x": "env"}
    assert "Y=env-y" in config["Env"]
    assert any(e.startswith("PATH=/bin:/usr/local/sbin") for e in config["Env"])


def test_shell_applies_to_later_shell_forms(tmp_path):
    text = 'FROM scratch\nSHELL ["/bin/bash", "-xc"]\nCMD run me\nENTRYPOINT ["e"]\n'
    config = config_of(tmp_path, text)["config"]
    assert config["Entrypoint"] == ["e"]
    assert config["Cmd"] == ["/bin/bash", "-xc", "run me"]  # set in this stage: kept


def test_onbuild_is_stored_and_stopsignal_expanded(tmp_path):
    text = "FROM scratch\nARG SIG=SIGTERM\nSTOPSIGNAL $SIG\nONBUILD RUN make\nMAINTAINER me\n"
    config = config_of(tmp_path, text)
    assert config["config"]["OnBuild"] == ["RUN make"]
    assert config["config"]["StopSignal"] == "SIGTERM"
    assert config["author"] == "me"


def test_healthcheck_exec_form_and_bad_options(tmp_path):
    text = 'FROM scratch\nHEALTHCHECK --start-interval=1s CMD ["check", "--now"]\n'
    check = config_of(tmp_path, text)["config"]["Healthcheck"]
    assert check == {"Test": ["CMD", "check", "--now"], "StartInterval": 1_000_000_000}
    with pytest.raises(DockerfileError) as err:
        config_of(tmp_path, "FROM scratch\n\nHEALTHCHECK --interval=soon CMD x\n")
    assert err.value.line == 3
    with pytest.raises(DockerfileError) as err:
        config_of(tmp_path, "FROM scratch\nHEALTHCHECK CMD\n")
    assert err.value.line == 2


def test_expose_rejects_bad_ports(tmp_path):
    with pytest.raises(DockerfileError) as err:
        config_of(tmp_path, "FROM scratch\nEXPOSE 80/tcp http\n")
    assert err.value.line == 2 and "http" in err.value.message


def test_history_and_identical_rebuild(tmp_path):
    text = "FROM scratch\nENV A=1\nLABEL b=2\n"
    first = config_of(tmp_path, text)
    assert [h["created_by"] for h in first["history"]] == ["ENV A=1", "LABEL b=2"]
    assert all(h.get("empty_layer") for h in first["history"])
    assert config_of(tmp_path, text) == first  # the cache gives the same image back


def test_error_render_shows_the_line(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM scratch\nWRONG here\n")
    with pytest.raises(DockerfileError) as err:
        parse(path.read_text(), str(path))
    assert err.value.render() == f"{path}:2: unknown instruction: WRONG\n  2 | WRONG here"
    inline = DockerfileError("dockerfile_inline", 1, "bad")
    assert inline.render("FROM x\n") == "dockerfile_inline:1: bad\n  1 | FROM x"
    assert inline.render() == "dockerfile_inline:1: bad"  # no file to read back


def test_unsupported_copy_flags_are_refused(tmp_path):
    with pytest.raises(DockerfileError, match="--exclude") as err:
        config_of(tmp_path, "FROM scratch\nCOPY --exclude=*.md . /app\n")
    assert err.value.line == 2
