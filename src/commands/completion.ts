/** `legacy completion bash|zsh|fish`: a static completion script generated from the command tree. */
import type { Command } from 'commander';
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';
import { command } from '../cli/spec.js';

interface Node {
  path: string[];
  subcommands: string[];
  options: string[];
}

function walk(cmd: Command, path: string[], out: Node[]): void {
  const options = cmd.options.flatMap((o) => [o.long, o.short].filter((x): x is string => Boolean(x)));
  out.push({ path, subcommands: cmd.commands.map((c) => c.name()), options });
  for (const sub of cmd.commands) walk(sub, [...path, sub.name()], out);
}

function bash(nodes: Node[], globals: string[]): string {
  const cases = nodes.map((n) => `    "${n.path.join(' ')}") words="${[...n.subcommands, ...n.options, ...globals].join(' ')}" ;;`).join('\n');
  return `# bash completion for legacy; add to ~/.bashrc: source <(legacy completion bash)
_legacy() {
  local cur path="" w words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$w" in -*) ;; *) if [ -z "$path" ]; then path="$w"; else path="$path $w"; fi ;; esac
  done
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _legacy legacy
`;
}

function zsh(nodes: Node[], globals: string[]): string {
  return `#compdef legacy
# zsh completion for legacy; add to ~/.zshrc: source <(legacy completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(nodes, globals)}`;
}

function fish(nodes: Node[]): string {
  const lines = ['# fish completion for legacy: legacy completion fish > ~/.config/fish/completions/legacy.fish', 'complete -c legacy -f'];
  const top = nodes.find((n) => n.path.length === 0)!;
  for (const name of top.subcommands) lines.push(`complete -c legacy -n "__fish_use_subcommand" -a ${name}`);
  for (const n of nodes) {
    if (n.path.length === 0) continue;
    const cond = `__fish_seen_subcommand_from ${n.path[n.path.length - 1]}`;
    for (const sub of n.subcommands) lines.push(`complete -c legacy -n "${cond}" -a ${sub}`);
    for (const opt of n.options.filter((o) => o.startsWith('--'))) lines.push(`complete -c legacy -n "${cond}" -l ${opt.slice(2)}`);
  }
  for (const opt of top.options.filter((o) => o.startsWith('--'))) lines.push(`complete -c legacy -l ${opt.slice(2)}`);
  return `${lines.join('\n')}\n`;
}

export async function run(ctx: CommandContext, args: string[]): Promise<number> {
  const shell = args[0] ?? '';
  const nodes: Node[] = [];
  walk(ctx.program, [], nodes);
  const globals = nodes[0]!.options;
  let script: string;
  if (shell === 'bash') script = bash(nodes, globals);
  else if (shell === 'zsh') script = zsh(nodes, globals);
  else if (shell === 'fish') script = fish(nodes);
  else {
    const hint = didYouMean(shell, ['bash', 'zsh', 'fish']);
    throw new UsageError(`unsupported shell '${shell}'${hint ? ` (${hint})` : ''}; use bash, zsh or fish`);
  }
  await write(ctx.io.stdout, script);
  return 0;
}

export const spec = command({
  name: 'completion <shell>',
  description: 'print a shell completion script (bash, zsh or fish)',
  examples: ['source <(legacy completion bash)', 'legacy completion fish > ~/.config/fish/completions/legacy.fish'],
  run,
});
