#!/usr/bin/env node
// Entry point of the `rtr7` command: hands over to oclif, which loads the
// compiled commands from dist/cli/commands.
import { execute } from "@oclif/core";

await execute({ dir: import.meta.url });
