// Grafana's own front-end code (@grafana/data, the version docker-compose pins) run on
// what the dashboard tests hand it, so they check what Grafana would show, not what we
// believe it would. Reads one JSON request on stdin, writes one JSON answer on stdout:
//   {"op": "units"}                          -> {"units": [every unit id Grafana knows]}
//   {"op": "transform", "frames": [...], "transformations": [...]}
//                                            -> {"frames": [{refId, fields: [{name, values}]}]}
//   {"op": "display", "config": {...}, "values": [...]}
//                                            -> {"shown": [{text, suffix, color}]}
// Frames are {refId, fields: [{name, type, values}]}; -Infinity travels as "-inf".
// Grafana expects a browser: the two globals below are all this code path reads of one.
globalThis.navigator = { language: 'en-US', languages: ['en-US'] };
const data = require('@grafana/data');
const { firstValueFrom } = require('rxjs');
globalThis.window = {};

const transformers = [
  ...new Map(Object.values(data.standardTransformers).map((t) => [t.id, t])).values(),
];
data.standardTransformersRegistry.setInit(() =>
  transformers.map((t) => ({ id: t.id, aliasIds: t.aliasIds, name: t.name, transformation: () => t })),
);

const decode = (v) => (v === '-inf' ? -Infinity : v);
const encode = (v) => (v === -Infinity ? '-inf' : Number.isNaN(v) ? 'nan' : v === undefined ? null : v);

// What Grafana does to a panel's field config when it loads a dashboard: the base
// threshold step (null in the JSON) becomes -Infinity.
function loaded(config) {
  const out = structuredClone(config);
  for (const step of out.thresholds?.steps ?? []) if (step.value === null) step.value = -Infinity;
  data.validateFieldConfig(out);
  return out;
}

async function main(request) {
  if (request.op === 'units') {
    const units = [];
    for (const category of data.getValueFormats()) for (const u of category.submenu) units.push(u.value);
    return { units };
  }
  if (request.op === 'transform') {
    const frames = request.frames.map((f) =>
      data.toDataFrame({ refId: f.refId, fields: f.fields.map((x) => ({ ...x, values: x.values.map(decode) })) }),
    );
    const out = await firstValueFrom(data.transformDataFrame(request.transformations, frames));
    return {
      frames: out.map((f) => ({ refId: f.refId, fields: f.fields.map((x) => ({ name: x.name, values: x.values.map(encode) })) })),
    };
  }
  if (request.op === 'display') {
    const theme = data.createTheme();
    const field = { type: 'number', config: loaded(request.config) };
    const show = data.getDisplayProcessor({ field, theme });
    return {
      shown: request.values.map(decode).map((v) => {
        const d = show(v);
        return { text: d.text, suffix: d.suffix ?? '', color: d.color };
      }),
    };
  }
  throw new Error(`unknown op ${request.op}`);
}

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  main(JSON.parse(input)).then(
    (answer) => process.stdout.write(JSON.stringify(answer)),
    (err) => {
      process.stderr.write(String(err.stack || err));
      process.exit(1);
    },
  );
});
