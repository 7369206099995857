// A format reward for `reward.module`: +0.1 when the response gives its answer in \boxed{...}. With the default
// weights the task reward is r_verifier + 0.1 · boxed; the part `format` (0 or 1) is logged per step and per
// response. Use it with:  --set reward.module=recipes/rewards/format.mjs
export default function ({ response }) {
  const boxed = /\\boxed\{[^}]*\}/.test(response) ? 1 : 0;
  return { score: 0.1 * boxed, parts: { format: boxed } };
}
