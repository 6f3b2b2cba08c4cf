// Package spec turns what users write into job specs, and decides whether a
// job spec may enter the cluster.
//
// Three ways in, one way out:
//
//   - ParseJobFile reads a YAML (or JSON) job file, the format in
//     docs/jobspec.md, with line numbers in its errors.
//   - ParseSbatch reads the #SBATCH and #DURE directives of a batch script
//     and makes a job that runs the script itself.
//   - ParseCPU, ParseSize and ParseWalltime read the quantities that CLI
//     flags, job files and directives share; ParseArray and ParseDependency
//     read Slurm's --array and --dependency syntax.
//
// Each produces an api.JobSpec. The caller applies its own overrides (CLI
// flags), then calls Normalize (fill defaults) and Validate (check every
// limit, report every problem with a JSON path such as
// "groups[0].resources.gpus"). The server validates every spec it receives,
// whoever built it, and only then turns it into a model.Job with ToModel: bad
// input must never reach the replicated state.
//
// This package is pure: it does no I/O, reads no clock, environment or
// files, and never logs. Parsers check syntax and types; limits live in
// Validate alone so that the CLI and the server agree on them. The limits are
// named constants in limits.go and documented for users in docs/jobspec.md;
// change both together.
package spec
