// The floor for bench:export, run as its own process so its time and peak RSS are measured like the
// CLI's: a bare keep-alive HTTP loop that reads every page of a table and parses nothing.
// It pages a stored entity set, as `legacy get-table` does, so the server does the same work:
// the first request makes the set (its id is read off the first bytes), then the pages one by one.
//   node bench/bare-loop.mjs <base url> <table> <rows> <page size> <order by>
import { Agent, request } from 'node:http';

const [url, table, rowsText, pageText, orderBy = 'UID asc'] = process.argv.slice(2);
const rows = Number(rowsText);
const pageSize = Number(pageText);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
let cookie;

/** GET a path; resolves with the first 512 bytes of the body, after reading all of it. */
function get(path) {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { agent, headers: { accept: 'application/json', ...(cookie ? { cookie } : {}) } }, (res) => {
      const set = res.headers['set-cookie'];
      if (set) cookie = set.map((c) => c.split(';')[0]).join('; ');
      let head = '';
      res.on('data', (chunk) => {
        if (head.length < 512) head += chunk.subarray(0, 512).toString('latin1');
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(head) : reject(new Error(`HTTP ${res.statusCode}: ${head}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const q = (value) => encodeURIComponent(value);
const first = await get(`/rest/${table}?$method=entityset&$orderby=${q(`"${orderBy}"`)}&$skip=0&$top=${pageSize}`);
const id = /\$entityset\/([^/?"]+)/.exec(first)?.[1];
if (!id) throw new Error(`no entity set in ${first.slice(0, 200)}`);
for (let skip = pageSize; skip < rows; skip += pageSize) {
  await get(`/rest/${table}/$entityset/${id}?$skip=${skip}&$top=${pageSize}`);
}
// Give the licence back: the runs of a benchmark would otherwise use up the server's sessions.
await get('/rest/$directory/logout').catch(() => undefined);
agent.destroy();
