/**
 * One node's Vivaldi estimator (hashicorp/serf `coordinate/client.go`): it holds this node's
 * coordinate and moves it with every RTT observation of another node. Pure: the shell measures
 * the RTT around a SWIM probe and passes it in with the coordinate that rode in the ack; the
 * only randomness (a direction for coincident points) comes from the injected `random`.
 */
import { VivaldiConfig, vivaldiConfigProblems } from './config';
import { Coordinate, ZERO_THRESHOLD, applyForce, cloneCoordinate, distanceTo, isCompatibleWith, isValid, newCoordinate, rawDistanceTo } from './coordinate';

/** Serf's bound: a longer "RTT" is a stalled process or a clock jump, not the network. */
export const MAX_RTT_SECONDS = 10;

export interface VivaldiClientStats {
  /** Times the coordinate went invalid (NaN/Inf) and was reset to the origin. */
  readonly resets: number;
}

export class VivaldiClient {
  private coord: Coordinate;
  private readonly origin: Coordinate;
  /** Ring of `rtt - rawDistance` samples behind the adjustment term of [3]. */
  private readonly adjustmentSamples: number[];
  private adjustmentIndex = 0;
  /** Last few RTT samples per node, for the median filter; dropped by forgetNode. */
  private readonly latencyFilterSamples = new Map<string, number[]>();
  private resets = 0;

  /** Throws when the config is unusable (serf's NewClient: `dimensionality must be >0`). */
  constructor(
    private readonly config: VivaldiConfig,
    private readonly random: () => number,
  ) {
    const problems = vivaldiConfigProblems(config);
    if (problems.length > 0) throw new Error(`invalid Vivaldi config: ${problems.join('; ')}`);
    this.coord = newCoordinate(config);
    this.origin = newCoordinate(config);
    this.adjustmentSamples = new Array<number>(config.adjustmentWindowSize).fill(0);
  }

  /** A copy of this node's coordinate, safe to send or keep. */
  getCoordinate(): Coordinate {
    return cloneCoordinate(this.coord);
  }

  /** Forces the coordinate to a known state (serf SetCoordinate), e.g. restored from a snapshot. */
  setCoordinate(coord: Coordinate): void {
    this.checkCoordinate(coord);
    this.coord = cloneCoordinate(coord);
  }

  /** Drops the latency samples of a node that left, so they neither leak nor bias a rejoin. */
  forgetNode(node: string): void {
    this.latencyFilterSamples.delete(node);
  }

  stats(): VivaldiClientStats {
    return { resets: this.resets };
  }

  /** Estimated RTT to `other` in seconds. */
  distanceTo(other: Coordinate): number {
    return distanceTo(this.coord, other);
  }

  /**
   * Folds in one observation: `rttSeconds` to `node`, whose coordinate is `other`. Throws on
   * input that would corrupt the estimate (wrong dimensionality, NaN/Inf, an RTT outside
   * (0, 10 s]) and leaves the coordinate untouched; returns the updated coordinate otherwise.
   */
  update(node: string, other: Coordinate, rttSeconds: number): Coordinate {
    this.checkCoordinate(other);
    // Serf accepts an RTT of exactly 0 (coarse clocks, consul#3789) and clamps it; ours come from
    // a monotonic clock, so 0 means a measuring bug and is refused like a negative one.
    if (!(Number.isFinite(rttSeconds) && rttSeconds > 0 && rttSeconds <= MAX_RTT_SECONDS)) {
      throw new Error(`round trip time not in valid range, duration ${rttSeconds}s is not a positive value less than ${MAX_RTT_SECONDS}s`);
    }

    const rtt = this.latencyFilter(node, rttSeconds);
    this.updateVivaldi(other, rtt);
    this.updateAdjustment(other, rtt);
    this.updateGravity();
    if (!isValid(this.coord, this.config.dimensionality)) {
      // Serf's NaN defence: a coordinate that went bad would spread to every peer through acks.
      this.resets++;
      this.coord = newCoordinate(this.config);
    }
    return cloneCoordinate(this.coord);
  }

  private checkCoordinate(coord: Coordinate): void {
    if (!Array.isArray(coord.vec) || !isCompatibleWith(this.coord, coord)) throw new Error("dimensions aren't compatible");
    if (!isValid(coord, this.config.dimensionality)) throw new Error('coordinate is invalid');
  }

  /** A moving median over the last latencyFilterSize samples of one node ([2]). */
  private latencyFilter(node: string, rttSeconds: number): number {
    const samples = this.latencyFilterSamples.get(node) ?? [];
    samples.push(rttSeconds);
    if (samples.length > this.config.latencyFilterSize) samples.shift();
    this.latencyFilterSamples.set(node, samples);
    const sorted = [...samples].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  /** The spring step of [1], weighted by how confident each side is. */
  private updateVivaldi(other: Coordinate, rttSeconds: number): void {
    // Serf reads the distance through a time.Duration (truncated to ns); the float is within 1 ns.
    const dist = distanceTo(this.coord, other);
    const rtt = Math.max(rttSeconds, ZERO_THRESHOLD);
    const wrongness = Math.abs(dist - rtt) / rtt;

    const totalError = Math.max(this.coord.error + other.error, ZERO_THRESHOLD);
    const weight = this.coord.error / totalError;

    const { vivaldiCE, vivaldiCC, vivaldiErrorMax } = this.config;
    const error = Math.min(vivaldiCE * weight * wrongness + this.coord.error * (1 - vivaldiCE * weight), vivaldiErrorMax);

    const force = vivaldiCC * weight * (rtt - dist);
    this.coord = applyForce(this.config, { ...this.coord, error }, force, other, this.random);
  }

  /**
   * The adjustment of [3]: half the mean of recent (rtt - raw distance), which soaks up the error
   * a Euclidean embedding cannot. Raw distance, because the old adjustments must not feed back.
   */
  private updateAdjustment(other: Coordinate, rttSeconds: number): void {
    const size = this.config.adjustmentWindowSize;
    if (size === 0) return;
    this.adjustmentSamples[this.adjustmentIndex] = rttSeconds - rawDistanceTo(this.coord, other);
    this.adjustmentIndex = (this.adjustmentIndex + 1) % size;
    let sum = 0;
    for (const sample of this.adjustmentSamples) sum += sample;
    this.coord = { ...this.coord, adjustment: sum / (2 * size) };
  }

  /** A small pull towards the origin, growing with the square of the distance, against drift ([2]). */
  private updateGravity(): void {
    const dist = distanceTo(this.origin, this.coord);
    const force = -1 * Math.pow(dist / this.config.gravityRho, 2);
    this.coord = applyForce(this.config, this.coord, force, this.origin, this.random);
  }
}
