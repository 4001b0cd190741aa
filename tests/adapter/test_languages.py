"""The runtimes beyond Python and C++ (C, Java, JavaScript, Bash, Go, Rust) through real HTTP:
each language's program of modes is compiled once per batch and run for every outcome a user
meets (output with stdin and args, an exit code, a crash, an endless loop, a memory hog, an
output flood), then sent again to find the compile cache's copy; the Azure and Piston routes
give each one's compile errors, names, aliases and language standards."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from ..conftest import SERVER_OUTPUT_CAP, WARM_PASS
from ..exploits.test_catalogue import MODES, service
from ..utils import Server, assert_nothing_left
from .test_batch import batch
from .test_execute_http import execute

# Nothing here depends on how Python starts: the second pass of the suite leaves them out.
pytestmark = pytest.mark.skipif(not WARM_PASS, reason="no Python runs here: one pass is enough")

C_MODES = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char mode[16] = "", word[64] = "";
    if (scanf("%15s %63s", mode, word) < 1) return 9;
    if (!strcmp(mode, "echo")) {
        printf("%s", word);
        for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
        printf("\n");
    } else if (!strcmp(mode, "exit")) {
        return 3;
    } else if (!strcmp(mode, "crash")) {
        raise(SIGSEGV);
    } else if (!strcmp(mode, "loop")) {
        volatile unsigned long x = 0;
        for (;;) x = x + 1;
    } else if (!strcmp(mode, "alloc")) {
        for (;;) {
            char *p = malloc(1 << 24);
            if (!p) { perror("malloc"); return 1; }
            memset(p, 1, 1 << 24);
        }
    } else if (!strcmp(mode, "flood")) {
        for (;;) fputs("flood flood flood\n", stdout);
    }
    return 0;
}
"""
JAVA_MODES = """
import java.util.*;

public class Main {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        String mode = in.next(), word = in.hasNext() ? in.next() : "";
        switch (mode) {
            case "echo":
                System.out.println(word + (args.length > 0 ? " " + String.join(" ", args) : ""));
                break;
            case "exit":
                System.exit(3);
            case "crash":
                throw new IllegalStateException("boom");
            case "loop": {
                long x = 0;
                while (true) x++;
            }
            case "alloc": {
                List<long[]> kept = new ArrayList<>();
                while (true) kept.add(new long[1 << 20]);
            }
            case "flood":
                while (true) System.out.println("flood flood flood");
        }
    }
}
"""
JAVASCRIPT_MODES = """
const [mode, word = ""] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/);
const args = process.argv.slice(2);
if (mode === "echo") console.log([word, ...args].join(" "));
else if (mode === "exit") process.exit(3);
else if (mode === "crash") throw new Error("boom");
else if (mode === "loop") for (;;) {}
else if (mode === "alloc") { const kept = []; for (;;) kept.push(new Array(1 << 20).fill(1.5)); }
else if (mode === "flood") { const s = "flood flood flood\\n".repeat(100); for (;;) process.stdout.write(s); }
"""
BASH_MODES = """
read -r mode word
case "$mode" in
    echo) echo "$word${*:+ $*}" ;;
    exit) exit 3 ;;
    crash) kill -SEGV $$ ;;
    loop) while :; do :; done ;;
    alloc) s=aaaaaaaaaaaaaaaa; while :; do s="$s$s"; done ;;
    flood) while :; do echo "flood flood flood"; done ;;
esac
"""
GO_MODES = """
package main

import (
\t"bufio"
\t"fmt"
\t"os"
\t"strings"
)

func main() {
\tvar mode, word string
\tfmt.Scan(&mode, &word)
\tswitch mode {
\tcase "echo":
\t\tfmt.Println(strings.Join(append([]string{word}, os.Args[1:]...), " "))
\tcase "exit":
\t\tos.Exit(3)
\tcase "crash":
\t\tpanic("boom")
\tcase "loop":
\t\tfor {
\t\t}
\tcase "alloc":
\t\tvar kept [][]byte
\t\tfor {
\t\t\tb := make([]byte, 1<<24)
\t\t\tfor i := range b {
\t\t\t\tb[i] = 1
\t\t\t}
\t\t\tkept = append(kept, b)
\t\t}
\tcase "flood":
\t\tw := bufio.NewWriter(os.Stdout)
\t\tfor {
\t\t\tw.WriteString("flood flood flood\\n")
\t\t}
\t}
}
"""
RUST_MODES = """
use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut words = input.split_whitespace();
    let mode = words.next().unwrap_or("");
    let word = words.next().unwrap_or("");
    match mode {
        "echo" => {
            let mut all = vec![word.to_string()];
            all.extend(std::env::args().skip(1));
            println!("{}", all.join(" "));
        }
        "exit" => std::process::exit(3),
        "crash" => panic!("boom"),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                unsafe { std::ptr::write_volatile(&mut x, x + 1) };
            }
        }
        "alloc" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 24]);
            }
        }
        "flood" => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            loop {
                out.write_all(b"flood flood flood\\n").unwrap();
            }
        }
        _ => {}
    }
}
"""
# language: (its program of modes, the main file, the comment that makes it unique, what its
# crash mode ends with: (detail, a fragment of stderr)).
LANGUAGES: dict[str, tuple[str, str, str, tuple[str, str]]] = {
    "c": (C_MODES, "main.c", "//", ("SIGSEGV", "")),
    "java": (JAVA_MODES, "Main.java", "//", ("exit code 1", "IllegalStateException: boom")),
    "javascript": (JAVASCRIPT_MODES, "main.js", "//", ("exit code 1", "Error: boom")),
    "bash": (BASH_MODES, "main.sh", "#", ("SIGSEGV", "")),
    "go": (GO_MODES, "main.go", "//", ("exit code 2", "panic: boom")),
    "rust": (RUST_MODES, "main.rs", "//", ("exit code 101", "panicked at 'boom'")),
}
COMPILED = ("c", "java", "go", "rust")
# stdin, args, limits; then the verdict, its detail and the run's outcome.
CASES: list[tuple[str, list[str], dict[str, float], str, str | None, str]] = [
    ("echo hello", ["a b", "-c"], {}, "ran", None, "ok"),
    ("exit", [], {}, "runtime_error", "exit code 3", "nonzero_exit"),
    ("crash", [], {}, "runtime_error", "crash", "crash"),
    ("loop", [], {"wall_timeout_s": 2, "cpu_time_s": 10}, "time_limit", "wall clock",
     "wall_timeout"),
    ("alloc", [], {"memory_bytes": 256 << 20}, "memory_limit", None, "memory_limit"),
    ("flood", [], {}, "output_limit", "stdout over the cap", "output_limit"),
]


def piston(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    response = server.post("/api/v2/execute", body)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    assert_nothing_left(server)
    return reply


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_outcome_and_the_compile_cache(server: Server, language: str) -> None:
    code, main, comment, (crash_detail, crash_stderr) = LANGUAGES[language]
    cases = [{"name": stdin.split()[0], "stdin": stdin, "args": args, "limits": limits}
             for stdin, args, limits, *_expected in CASES]
    body = {"language": language,
            "files": [{"name": main, "content": f"{comment} {secrets.token_hex(8)}\n{code}"}],
            "cases": cases}
    reply = batch(server, body)
    assert reply["language"] == language
    if language in COMPILED:
        assert (reply["compile"]["outcome"], reply["compile"]["cached"]) == ("ok", False), reply
    by_name = {case["name"]: case for case in reply["cases"]}
    got = {name: (case["verdict"], case["detail"], case["outcome"])
           for name, case in by_name.items()}
    wanted = {stdin.split()[0]: (verdict, crash_detail if detail == "crash" else detail,
                                 ("signaled" if crash_detail.startswith("SIG") else "nonzero_exit")
                                 if outcome == "crash" else outcome)
              for stdin, _args, _limits, verdict, detail, outcome in CASES}
    assert got == wanted, {name: (case["stderr"][-300:]) for name, case in by_name.items()}
    assert by_name["echo"]["stdout"] == "hello a b -c\n"
    assert crash_stderr in by_name["crash"]["stderr"]
    assert by_name["flood"]["stdout_bytes"] == SERVER_OUTPUT_CAP
    if language in COMPILED:
        # The same sources again: the compile's stored copy, not a second compile.
        again = batch(server, {**body, "cases": cases[:1]})
        assert again["compile"]["cached"] is True
        assert again["cases"][0]["stdout"] == "hello a b -c\n"


@pytest.mark.parametrize(("language", "code", "message"), [
    ("c", "int main(void) { return undeclared; }", "undeclared (first use in this function)"),
    ("java", 'public class Main { public static void main(String[] a) { int x = "s"; } }',
     "incompatible types: String cannot be converted to int"),
    ("go", "package main\n\nfunc main() {\n\tx := 1\n}\n", "x declared but not used"),
    ("rust", 'fn main() { let x: i32 = "s"; }', "mismatched types"),
])
def test_compile_errors_carry_the_compilers_message(server: Server, language: str, code: str,
                                                    message: str) -> None:
    props = execute(server, code, language)
    assert (props["status"], props["outcome"], props["compile"]["outcome"]) == (
        "Failure", "compile_error", "nonzero_exit")
    assert message in props["stderr"]


@pytest.mark.parametrize(("alias", "language", "code"), [
    ("gcc", "c", '#include <stdio.h>\nint main(void){char s[9];scanf("%8s",s);puts(s);}'),
    ("node", "javascript", "console.log(require('fs').readFileSync(0, 'utf8').trim())"),
    ("js", "javascript", "console.log(require('fs').readFileSync(0, 'utf8').trim())"),
    ("sh", "bash", "read -r w; echo \"$w\""),
    ("golang", "go", ('package main\nimport "fmt"\nfunc main(){var s string;fmt.Scan(&s);'
     'fmt.Println(s)}')),
    ("rs", "rust", ("fn main(){let mut s=String::new();std::io::stdin().read_line(&mut s)"
     ".unwrap();println!(\"{}\",s.trim());}")),
    # A one-file Java program of any public class: compiled as the file javac demands.
    ("java", "java", ("import java.util.*;\npublic class Solution {\n    public static void "
     "main(String[] a) { System.out.println(new Scanner(System.in).next()); }\n}\n")),
])
def test_aliases_serve_the_azure_route(server: Server, alias: str, language: str,
                                       code: str) -> None:
    props = execute(server, code, alias, stdin="word")
    assert (props["outcome"], props["stdout"], props["runtime"]["language"]) == (
        "ok", "word\n", language), props["stderr"]


def test_java_compiles_several_files_and_finds_the_class_with_main(server: Server) -> None:
    helper = "package util;\n\npublic class Helper {\n    public static int twice(int x) " \
             "{ return 2 * x; }\n}\n"
    app = "package app;\n\nimport util.Helper;\n\npublic class App {\n    public static void " \
          "main(String[] args) { System.out.println(Helper.twice(21) + \" \" + args[0]); }\n}\n"
    # The first file has no main: the class to run is the one that declares it, in its package.
    reply = piston(server, {"language": "java", "version": "*", "args": ["x"],
                            "files": [{"name": "util/Helper.java", "content": helper},
                                      {"name": "app/App.java", "content": app}]})
    assert (reply["compile"]["code"], reply["run"]["stdout"]) == (0, "42 x\n"), reply


@pytest.mark.parametrize(("language", "version", "code", "stdout"), [
    # Piston's own runtime field for JavaScript is `node`; both names reach it.
    ("node", "*", "console.log(process.version.slice(1, 3))", None),
    ("javascript", "*", "console.log(process.version.slice(1, 3))", None),
    # A standard as the version: C++20's starts_with, C++23's contains, C11's version macro.
    ("c++", "c++20", ('#include <cstdio>\n#include <string>\nint main(){std::puts('
     'std::string("c++20").starts_with("c++") ? "20" : "no");}'), "20\n"),
    ("cpp", "c++23", ('#include <cstdio>\n#include <string>\nint main(){std::puts('
     'std::string("c++23").contains("23") ? "23" : "no");}'), "23\n"),
    ("c", "c11", '#include <stdio.h>\nint main(void){printf("%ld\\n", __STDC_VERSION__);}',
     "201112\n"),
    ("c", "*", '#include <stdio.h>\nint main(void){printf("%ld\\n", __STDC_VERSION__);}',
     "201710\n"),
])
def test_piston_names_and_standards(server: Server, language: str, version: str, code: str,
                                    stdout: str | None) -> None:
    reply = piston(server, {"language": language, "version": version,
                            "files": [{"content": code}]})
    assert reply["run"]["code"] == 0, reply
    if stdout is None:
        assert reply["language"] == "javascript"
        assert reply["version"].split(".")[0] == reply["run"]["stdout"].strip()
    else:
        assert reply["run"]["stdout"] == stdout


@pytest.mark.parametrize("alias", ["cpp17", "c++17", "cpp"])
def test_cpp17_is_the_default_and_refuses_cpp20(server: Server, alias: str) -> None:
    props = execute(server, '#include <string>\nint main(){return std::string("a")'
                            '.starts_with("a") ? 0 : 1;}', alias)
    assert props["outcome"] == "compile_error"
    assert "has no member named" in props["stderr"]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("language", ["java", "javascript", "go"])
def test_virtual_machines_fit_256_mib_and_stop_at_it(request: pytest.FixtureRequest, mode: str,
                                                    language: str) -> None:
    # Root mode bounds a run's memory with its cgroup, the unprivileged mode with the launcher's
    # watchdog: with no RLIMIT_AS for these runtimes, either must make a hog `memory_limit`.
    server = service(request, mode)
    code, main, comment, _crash = LANGUAGES[language]
    limits = {"memory_bytes": 256 << 20}
    reply = batch(server, {
        "language": language, "limits": limits,
        "files": [{"name": main, "content": f"{comment} {secrets.token_hex(8)}\n{code}"}],
        "cases": [{"name": "echo", "stdin": "echo hi"}, {"name": "alloc", "stdin": "alloc"}]})
    echo, alloc = reply["cases"]
    assert (echo["verdict"], echo["stdout"]) == ("ran", "hi\n"), echo["stderr"][-500:]
    assert (alloc["verdict"], alloc["outcome"]) == ("memory_limit", "memory_limit"), alloc
