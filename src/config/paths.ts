/** OS-appropriate directories for legacy (env-paths, as conf uses it, without the "-nodejs" suffix). */
import envPaths from 'env-paths';

const paths = envPaths('legacy', { suffix: '' });

/** Linux: $XDG_CONFIG_HOME/legacy; macOS: ~/Library/Preferences/legacy; Windows: %APPDATA%\legacy\Config */
export const defaultConfigDir = (): string => paths.config;
/** Linux: $XDG_DATA_HOME/legacy; macOS: ~/Library/Application Support/legacy; Windows: %LOCALAPPDATA%\legacy\Data */
export const defaultDataDir = (): string => paths.data;
