// The unit target's public face: openUnit and the types a caller (safe-update,
// the fleet's rollout engine, tests) names. The parts live one concern per
// file beside this one.
export {
  openUnit,
  type OpenUnitOptions,
  type UnitCredentials,
  type UnitEndpoint,
  type UnitTarget,
} from "./target.js";
export {
  nodeHttpTransport,
  readText,
  type NodeTransportOptions,
  type Transport,
  type TransportRequest,
  type TransportResponse,
} from "./transport.js";
export { unitFeatures, type UnitFeature } from "./features.js";
export type { StreamOptions, StreamResult, UploadSource } from "./upload.js";
export type { BackupOptions } from "./backup.js";
export type { KeyIntroduction, ManifestAccepted, SendManifestOptions, UnitTrust } from "./trust.js";
export { UnitAnswerError, UnitUnreachableError } from "./unit-errors.js";
export { probeUnitHealth } from "./health.js";
