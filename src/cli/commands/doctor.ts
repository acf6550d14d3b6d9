// `s2s-train doctor [--json]`
import type { CommandModule } from "yargs";
import { formatDoctor, runDoctor } from "../../doctor.js";

interface DoctorArgs {
  json: boolean;
}

export const doctorCommand: CommandModule<object, DoctorArgs> = {
  command: "doctor",
  describe: "Show version, compiler, backends, CPU features, chosen kernels, threads and GPUs",
  builder: (y) =>
    y.option("json", { type: "boolean", default: false, describe: "Print the report as JSON" }),
  handler: (args) => {
    const report = runDoctor();
    process.stdout.write((args.json ? JSON.stringify(report, null, 2) : formatDoctor(report)) + "\n");
  },
};
