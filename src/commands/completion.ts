/**
 * `legacy completion bash|zsh|fish`: a small script that asks `legacy __complete` (../app/complete.ts)
 * on every TAB, so what completes is always what this version's command specs say, table names
 * included (from the cached catalog, without a request).
 */
import type { CommandContext } from '../cli/context.js';
import { write } from '../cli/io.js';
import { command } from '../cli/spec.js';
import { UsageError } from '../errors/index.js';
import { didYouMean } from '../errors/suggest.js';

// Each script sends the words before the cursor and the word being completed; the first answer
// line says what kind of completion it is (:words, :files, :dirs), the others are candidates with
// an optional TAB and description.
const BASH = `# bash completion for legacy; add to ~/.bashrc: source <(legacy completion bash)
_legacy() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" line
  local IFS=$'\\n'
  local -a answer
  answer=( $(command legacy __complete "\${COMP_WORDS[@]:1:COMP_CWORD-1}" "$cur" 2>/dev/null) ) || return 0
  COMPREPLY=()
  case "\${answer[0]}" in
    :files) compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ) ;;
    :dirs) compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -d -- "$cur") ) ;;
    *) for line in "\${answer[@]:1}"; do COMPREPLY+=( "\${line%%$'\\t'*}" ); done ;;
  esac
}
complete -F _legacy legacy
`;

const ZSH = `#compdef legacy
# zsh completion for legacy; add to ~/.zshrc: source <(legacy completion zsh)
autoload -U +X bashcompinit && bashcompinit
${BASH}`;

const FISH = `# fish completion for legacy: legacy completion fish > ~/.config/fish/completions/legacy.fish
function __legacy_complete
    set -l words (commandline -opc)
    set -e words[1]
    set -l answer (command legacy __complete $words (commandline -ct) 2>/dev/null)
    switch "$answer[1]"
        case :files
            __fish_complete_path (commandline -ct)
        case :dirs
            __fish_complete_directories (commandline -ct)
        case '*'
            printf '%s\\n' $answer[2..-1]
    end
end
complete -c legacy -f -a '(__legacy_complete)'
`;

const SCRIPTS: Record<string, string> = { bash: BASH, zsh: ZSH, fish: FISH };

export async function run(ctx: CommandContext, args: string[]): Promise<number> {
  const shell = args[0] ?? '';
  const script = Object.hasOwn(SCRIPTS, shell) ? SCRIPTS[shell] : undefined;
  if (!script) {
    const hint = didYouMean(shell, Object.keys(SCRIPTS));
    throw new UsageError(`unsupported shell '${shell}'${hint ? ` (${hint})` : ''}; use bash, zsh or fish`);
  }
  await write(ctx.io.stdout, script);
  return 0;
}

export const spec = command({
  name: 'completion <shell>',
  description: 'print a shell completion script (bash, zsh or fish); it completes commands, options, environments and cached table names',
  complete: [['bash', 'zsh', 'fish']],
  examples: ['source <(legacy completion bash)', 'legacy completion fish > ~/.config/fish/completions/legacy.fish'],
  run,
});
