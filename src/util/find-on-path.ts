// Where a program is on PATH, without running it (`which`), for checks before a build or a hint.
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";

/** The first executable file named `name` in PATH's folders (PATHEXT's suffixes on Windows). */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const suffixes = process.platform === "win32" ? ["", ...(env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";")] : [""];
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    for (const suffix of suffixes) {
      const candidate = path.join(dir, name + suffix);
      try {
        if (!statSync(candidate).isFile()) continue;
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not there or not executable: keep looking
      }
    }
  }
  return undefined;
}
