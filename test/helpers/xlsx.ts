/**
 * Read an .xlsx back with an independent reader (Python's openpyxl), as plain JSON: per sheet its
 * title, frozen pane, autofilter, header font, column widths and every cell, typed:
 * {date: 'YYYY-MM-DD'} / {time: 'HH:MM:SS'} for date and time cells, numbers, booleans, strings, null.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export interface XlsxSheet {
  title: string;
  freeze: string | null;
  autoFilter: string | null;
  headerBold: boolean;
  widths: Record<string, number>;
  rows: unknown[][];
}

const SCRIPT = `
import datetime, json, sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
def cell(c):
    v = c.value
    if isinstance(v, datetime.datetime):
        return {'date': v.date().isoformat()} if v.time() == datetime.time(0) else {'datetime': v.isoformat()}
    if isinstance(v, datetime.time):
        return {'time': v.strftime('%H:%M:%S')}
    if isinstance(v, datetime.timedelta):
        s = int(v.total_seconds())
        return {'time': '%02d:%02d:%02d' % (s // 3600, s % 3600 // 60, s % 60)}
    return v
out = []
for ws in wb.worksheets:
    out.append({
        'title': ws.title,
        'freeze': ws.freeze_panes,
        'autoFilter': ws.auto_filter.ref,
        'headerBold': bool(ws['A1'].font.b),
        'widths': {k: d.width for k, d in ws.column_dimensions.items()},
        'rows': [[cell(c) for c in row] for row in ws.iter_rows()],
    })
json.dump(out, sys.stdout)
`;

export async function readXlsx(python: string, file: string): Promise<XlsxSheet[]> {
  const { stdout } = await promisify(execFile)(python, ['-c', SCRIPT, file], { maxBuffer: 512 * 1024 * 1024 });
  return JSON.parse(stdout) as XlsxSheet[];
}
