/**
 * Tuning of the Vivaldi network coordinates (hashicorp/serf `coordinate/config.go`, whose
 * DefaultConfig Consul uses unchanged for its LAN, WAN and area pools). References as serf cites them:
 *
 * [1] Dabek et al., "Vivaldi: A decentralized network coordinate system", SIGCOMM 2004.
 * [2] Ledlie, Gardner, Seltzer, "Network Coordinates in the Wild", NSDI 2007.
 * [3] Lee et al., "On suitability of Euclidean embedding for host-based network coordinate
 *     systems", IEEE/ACM ToN 18.1 (2010).
 *
 * Every distance is in seconds, as in serf, so coordinates stay comparable with Consul's.
 */
export interface VivaldiConfig {
  /** Euclidean dimensions of a coordinate. Per [2], 8 dimensions plus a non-Euclidean height. Default 8. */
  readonly dimensionality: number;
  /** Error of a node that has observed nothing yet, and the cap on error afterwards. Default 1.5. */
  readonly vivaldiErrorMax: number;
  /** Most an observation can move a node's confidence ([1] c_e). Default 0.25. */
  readonly vivaldiCE: number;
  /** Most an observation can move a node's coordinate ([1] c_c). Default 0.25. */
  readonly vivaldiCC: number;
  /** Samples kept for the adjustment term of [3]; 0 turns the adjustment off. Default 20. */
  readonly adjustmentWindowSize: number;
  /** Floor of the height (seconds). Height must stay positive, so this small error is the price. Default 10e-6. */
  readonly heightMin: number;
  /** RTT samples kept per node; Vivaldi sees their median, which rides out blips ([2]). Default 3. */
  readonly latencyFilterSize: number;
  /** How hard gravity pulls coordinates back towards the origin to stop drift ([2]). Default 150. */
  readonly gravityRho: number;
}

/** Serf's `DefaultConfig()`: what Consul runs with, so our coordinates match a Consul pool's. */
export function defaultVivaldiConfig(): VivaldiConfig {
  return {
    dimensionality: 8,
    vivaldiErrorMax: 1.5,
    vivaldiCE: 0.25,
    vivaldiCC: 0.25,
    adjustmentWindowSize: 20,
    heightMin: 10e-6,
    latencyFilterSize: 3,
    gravityRho: 150,
  };
}

/** Every problem with a config, each naming the field and what it must be; empty when usable. */
export function vivaldiConfigProblems(config: VivaldiConfig): string[] {
  const problems: string[] = [];
  // Serf's own text for the one check NewClient makes.
  if (!(Number.isInteger(config.dimensionality) && config.dimensionality > 0)) problems.push('dimensionality must be >0');
  if (!(Number.isFinite(config.vivaldiErrorMax) && config.vivaldiErrorMax > 0)) problems.push('vivaldiErrorMax must be a finite number > 0');
  if (!(config.vivaldiCE > 0 && config.vivaldiCE <= 1)) problems.push('vivaldiCE must be in (0, 1]');
  if (!(config.vivaldiCC > 0 && config.vivaldiCC <= 1)) problems.push('vivaldiCC must be in (0, 1]');
  if (!(Number.isInteger(config.adjustmentWindowSize) && config.adjustmentWindowSize >= 0)) problems.push('adjustmentWindowSize must be an integer >= 0 (0 turns the adjustment off)');
  if (!(Number.isFinite(config.heightMin) && config.heightMin >= 0)) problems.push('heightMin must be a finite number >= 0');
  if (!(Number.isInteger(config.latencyFilterSize) && config.latencyFilterSize > 0)) problems.push('latencyFilterSize must be an integer > 0');
  if (!(Number.isFinite(config.gravityRho) && config.gravityRho > 0)) problems.push('gravityRho must be a finite number > 0');
  return problems;
}
