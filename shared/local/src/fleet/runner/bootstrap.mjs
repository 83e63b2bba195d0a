// selfbuild's stand-in for Lambda's Node.js runtime: loads the handler's module from the
// package (.js, .mjs or .cjs; CommonJS or ESM), calls it with the event and a minimal
// context (awaiting a promise or a callback), writes how it ended as JSON.
// Arguments: task dir, handler, event file, result file, function name, memory MB, timeout ms.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const [task, handlerName, eventFile, resultFile, name, memory, timeoutMs] = process.argv.slice(2);
const self = fileURLToPath(import.meta.url);
const started = Date.now();
let finished = false;

function finish(outcome) {
  if (finished) return;
  finished = true;
  writeFileSync(resultFile, JSON.stringify(outcome));
  process.exit(0);
}

function failure(type, message, trace = []) {
  return { error: { type, message, trace } };
}

// The error as the runtime reports it; only the package's and V8's own frames are kept.
function thrown(e) {
  if (e instanceof Error) {
    const stack = String(e.stack ?? `${e.name}: ${e.message}`)
      .split("\n")
      .filter((l) => !l.includes(self) && !l.includes("node:internal"));
    return failure(e.name || "Error", String(e.message), stack);
  }
  return failure(typeof e, String(e));
}

process.on("uncaughtException", (e) => finish(thrown(e)));
process.on("unhandledRejection", (e) => finish(thrown(e)));

const context = {
  functionName: name,
  functionVersion: "$LATEST",
  memoryLimitInMB: memory,
  awsRequestId: "00000000-0000-4000-8000-000000000000",
  invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${name}`,
  logGroupName: `/aws/lambda/${name}`,
  logStreamName: "local",
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => Math.max(0, Number(timeoutMs) - (Date.now() - started)),
};

async function main() {
  const dot = handlerName.lastIndexOf(".");
  if (dot <= 0) {
    return failure("Runtime.MalformedHandlerName", `Bad handler ${handlerName}`);
  }
  const moduleName = handlerName.slice(0, dot);
  const functionName = handlerName.slice(dot + 1);
  const file = [".js", ".mjs", ".cjs"]
    .map((ext) => path.join(task, moduleName + ext))
    .find((f) => existsSync(f));
  if (!file) {
    return failure("Runtime.ImportModuleError", `Error: Cannot find module '${moduleName}'`);
  }
  let module;
  try {
    module = await import(pathToFileURL(file).href);
  } catch (e) {
    if (e instanceof SyntaxError) {
      return failure("Runtime.UserCodeSyntaxError", `${e.name}: ${e.message}`, thrown(e).error.trace);
    }
    return thrown(e);
  }
  const handler = module[functionName] ?? module.default?.[functionName];
  if (typeof handler !== "function") {
    return failure(
      "Runtime.HandlerNotFound",
      `${moduleName}.${functionName} is undefined or not exported`,
    );
  }
  const event = JSON.parse(readFileSync(eventFile, "utf8"));
  let result;
  try {
    result = await new Promise((resolve, reject) => {
      const callback = (error, value) => (error ? reject(error) : resolve(value));
      const returned = handler(event, context, callback);
      if (handler.length < 3 || (returned && typeof returned.then === "function")) {
        Promise.resolve(returned).then(resolve, reject);
      }
    });
  } catch (e) {
    return thrown(e);
  }
  try {
    JSON.stringify(result);
  } catch (e) {
    return failure("Runtime.MarshalError", `Unable to marshal response: ${e.message}`);
  }
  return { ok: true };
}

main().then(finish, (e) => finish(thrown(e)));
