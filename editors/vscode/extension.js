// The archdsl extension's client: starts `archdsl lsp` (or the command in the setting
// `archdsl.server.command`) and talks LSP to it over stdin/stdout. Highlighting, comments,
// brackets and indentation come from the TextMate grammar and language-configuration.json and
// work without the server.
'use strict';

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

const DEFAULT_COMMAND = ['archdsl', 'lsp'];

/** @type {LanguageClient | undefined} */
let client;
/** @type {vscode.OutputChannel | undefined} */
let outputChannel;

/** The server command from the settings: a non-empty array of strings, else the default. */
function serverCommand() {
  const command = vscode.workspace.getConfiguration('archdsl').get('server.command', DEFAULT_COMMAND);
  if (Array.isArray(command) && command.length > 0 && command.every((part) => typeof part === 'string' && part)) {
    return command;
  }
  vscode.window.showWarningMessage(
    `archdsl: the setting archdsl.server.command must be a non-empty list of strings; using ${JSON.stringify(DEFAULT_COMMAND)}.`,
  );
  return DEFAULT_COMMAND;
}

function createClient() {
  const [command, ...args] = serverCommand();
  // No `transport` on purpose: an Executable without one talks over stdio; with
  // TransportKind.stdio the client would also append a `--stdio` argument.
  const run = { command, args };
  const serverOptions = { run, debug: run };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'archdsl' }],
    synchronize: {
      // imported files change what a spec means: tell the server when any .arch file changes
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.arch'),
    },
    outputChannel,
  };
  return new LanguageClient('archdsl', 'archdsl language server', serverOptions, clientOptions);
}

async function startClient() {
  client = createClient();
  try {
    await client.start();
  } catch (error) {
    const command = serverCommand().join(' ');
    vscode.window.showErrorMessage(
      `archdsl: could not start the language server with \`${command}\` (${error && error.message ? error.message : error}). ` +
        'Install archdsl with its language server (`pip install "archdsl[lsp]"`) so that `archdsl` is on PATH, or set archdsl.server.command.',
    );
  }
}

async function stopClient() {
  if (!client) {
    return;
  }
  const stopping = client;
  client = undefined;
  try {
    await stopping.stop();
  } catch {
    // a server that never started, or died: nothing left to stop
  }
}

async function restartClient() {
  await stopClient();
  await startClient();
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  outputChannel = vscode.window.createOutputChannel('archdsl language server');
  context.subscriptions.push(
    outputChannel,
    vscode.commands.registerCommand('archdsl.restartServer', restartClient),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('archdsl.server.command')) {
        restartClient();
      }
    }),
  );
  await startClient();
}

function deactivate() {
  return stopClient();
}

module.exports = { activate, deactivate };
