// Tests start processes through the lab's helpers (lab/processes.ts).
export * from "../../lab/processes.js";
