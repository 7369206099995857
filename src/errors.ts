// Errors about the caller's input, shared by the library and the CLI (the library never imports the CLI). The CLI
// reports a UsageError as one clear line, without a stack trace, and exits with its code (2: the input was wrong).
export class UsageError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UsageError';
    this.exitCode = exitCode;
  }
}

/** A bad configuration: a training config (file or `--set` override) or a model's config.json. */
export class ConfigError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }

  /** An error about one key of one file: `<file>: key '<key>': <message>`. */
  static atKey(file: string, key: string, message: string): ConfigError {
    return new ConfigError(`${file}: key '${key}': ${message}`);
  }
}
