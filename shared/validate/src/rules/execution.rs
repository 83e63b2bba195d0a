//! `code_execution`: code or a command line built from data is run (eval/exec/compile,
//! `new Function`, `vm.runIn*`, `os.system`, `shell=True`, `child_process.exec*`, `Command`
//! from input, dynamic `import()`/`__import__`). `shell_command`: a constant command line
//! through a shell.

use super::{Ctx, Out, norm, shell_c_with_data};
use crate::facts::{Call, Val};
use crate::finding::Rule;
use crate::language::Language;

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    for call in &ctx.facts.calls {
        let verdict = match ctx.language {
            Language::Python => python(call),
            Language::Rust => rust(call),
            _ => js(call),
        };
        if let Some((rule, message)) = verdict {
            let risk = rule.default_risk();
            out.report(ctx.call_changed(call), rule, risk, call.loc, message);
        }
    }
}

type Verdict = Option<(Rule, String)>;

fn exec(message: String) -> Verdict {
    Some((Rule::CodeExecution, message))
}

fn first_dynamic(call: &Call) -> bool {
    call.args.first().is_some_and(|a| !a.is_constant())
}

fn python(call: &Call) -> Verdict {
    let c = call.callee.as_str();
    match c {
        "eval" | "exec" | "compile" if first_dynamic(call) => {
            exec(format!("{c}() runs code built from data"))
        }
        "__import__" | "importlib.import_module" | "importlib.__import__"
            if first_dynamic(call) =>
        {
            exec(format!("{c}() imports a module named by data"))
        }
        "os.system"
        | "os.popen"
        | "subprocess.getoutput"
        | "subprocess.getstatusoutput"
        | "commands.getoutput"
        | "asyncio.create_subprocess_shell"
        | "pty.spawn" => {
            if first_dynamic(call) {
                exec(format!("{c}() runs a shell command line built from data"))
            } else {
                Some((
                    Rule::ShellCommand,
                    format!("{c}() runs a command line through a shell"),
                ))
            }
        }
        _ if c.starts_with("os.exec")
            || c.starts_with("os.spawn")
            || c.starts_with("os.posix_spawn") =>
        {
            if call.args.iter().any(|a| !a.is_constant()) {
                exec(format!("{c}() runs a program named or argued by data"))
            } else {
                None
            }
        }
        "subprocess.run"
        | "subprocess.call"
        | "subprocess.check_call"
        | "subprocess.check_output"
        | "subprocess.Popen"
        | "asyncio.create_subprocess_exec" => subprocess(call, c),
        _ => None,
    }
}

fn subprocess(call: &Call, c: &str) -> Verdict {
    let command = call.args.first().or_else(|| call.kwarg("args"))?;
    let shell = call
        .kwarg("shell")
        .is_some_and(|v| !matches!(v, Val::Bool(false) | Val::Null));
    if shell {
        return if command.is_constant() {
            Some((
                Rule::ShellCommand,
                format!("{c}(shell=True) runs a command line through a shell"),
            ))
        } else {
            exec(format!(
                "{c}(shell=True) runs a command line built from data"
            ))
        };
    }
    match command {
        Val::List(items) => {
            if items.first().is_some_and(|p| !p.is_constant()) {
                return exec(format!("{c}() runs a program named by data"));
            }
            match shell_c_with_data(items) {
                Some(true) => exec(format!(
                    "{c}() runs `sh -c` on a command line built from data"
                )),
                Some(false) => Some((Rule::ShellCommand, format!("{c}() runs `sh -c`"))),
                None => None,
            }
        }
        Val::Built(..) => exec(format!(
            "{c}() runs a program named by a string built from data"
        )),
        _ => None,
    }
}

fn js(call: &Call) -> Verdict {
    // Reflect.apply(f, this, [args]), f.call(this, ...args), f.apply(this, [args]) call f.
    let indirect = match (call.callee.as_str(), call.args.first()) {
        ("Reflect.apply", Some(Val::Ref(target))) => Some((
            target.clone(),
            match call.args.get(2) {
                Some(Val::List(items)) => items.clone(),
                _ => vec![Val::Unknown],
            },
        )),
        (c, _) if c.ends_with(".call") || c.ends_with(".apply") => {
            let target = c
                .rsplit_once('.')
                .map(|(t, _)| t.to_owned())
                .unwrap_or_default();
            let args = if c.ends_with(".apply") {
                match call.args.get(1) {
                    Some(Val::List(items)) => items.clone(),
                    _ => vec![Val::Unknown],
                }
            } else {
                call.args.iter().skip(1).cloned().collect()
            };
            Some((target, args))
        }
        _ => None,
    };
    if let Some((callee, args)) = indirect {
        let direct = Call {
            method: callee.rsplit('.').next().unwrap_or(&callee).to_owned(),
            callee,
            args,
            ..call.clone()
        };
        return js_direct(&direct);
    }
    js_direct(call)
}

fn js_direct(call: &Call) -> Verdict {
    let c = norm(&call.callee);
    match c {
        "eval" if first_dynamic(call) => exec("eval() runs code built from data".into()),
        "Function" if call.args.iter().any(|a| !a.is_constant()) => {
            exec("Function() compiles code built from data".into())
        }
        "import" | "require" if first_dynamic(call) => {
            exec(format!("{c}() loads a module named by data"))
        }
        "setTimeout" | "setInterval" if matches!(call.args.first(), Some(Val::Built(..))) => {
            exec(format!("{c}() with a string runs it as code"))
        }
        "vm.runInNewContext"
        | "vm.runInThisContext"
        | "vm.runInContext"
        | "vm.compileFunction"
        | "vm.Script"
        | "vm.SourceTextModule"
            if first_dynamic(call) =>
        {
            exec(format!("{c}() runs code built from data"))
        }
        "child_process.exec" | "child_process.execSync" => {
            if first_dynamic(call) {
                exec(format!("{c}() runs a shell command line built from data"))
            } else {
                Some((
                    Rule::ShellCommand,
                    format!("{c}() runs a command line through a shell"),
                ))
            }
        }
        "child_process.spawn"
        | "child_process.spawnSync"
        | "child_process.execFile"
        | "child_process.execFileSync"
        | "child_process.fork" => {
            let program = call.args.first()?;
            let argv = match call.args.get(1) {
                Some(Val::List(items)) => items.clone(),
                _ => Vec::new(),
            };
            let shell = call.args.iter().any(|a| {
                a.get("shell")
                    .is_some_and(|v| !matches!(v, Val::Bool(false) | Val::Null))
            });
            if !program.is_constant() {
                return exec(format!("{c}() runs a program named by data"));
            }
            if shell && argv.iter().any(|a| !a.is_constant()) {
                return exec(format!(
                    "{c}({{shell: true}}) runs a command line built from data"
                ));
            }
            let mut all = vec![program.clone()];
            all.extend(argv);
            match shell_c_with_data(&all) {
                Some(true) => exec(format!(
                    "{c}() runs `sh -c` on a command line built from data"
                )),
                _ => None,
            }
        }
        _ => None,
    }
}

fn rust(call: &Call) -> Verdict {
    let c = call.callee.as_str();
    if c.ends_with("Command.new") && !c.contains("()") {
        return first_dynamic(call).then(|| {
            (
                Rule::CodeExecution,
                "Command::new() runs a program named by data".to_owned(),
            )
        });
    }
    if c.contains("Command.new()") && call.method_in(&["output", "spawn", "status", "exec"]) {
        let Some(Val::Call { args, .. }) = &call.receiver else {
            return None;
        };
        return match shell_c_with_data(args) {
            Some(true) => exec("Command runs `sh -c` on a command line built from data".into()),
            Some(false) => Some((Rule::ShellCommand, "Command runs `sh -c`".into())),
            None => None,
        };
    }
    None
}
