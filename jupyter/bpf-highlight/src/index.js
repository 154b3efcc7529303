// bpfkit: a notebook cell that starts with %%bpf (or %%bpfobject, libbpf C) holds BPF C, so its editor highlights C (a
// `# needs: ...` line may come first: the kit skips the cell where the kernel refuses what it names).
// JupyterLab gives every code cell the kernel's language (Python) and has no per-cell magic
// languages (jupyterlab/jupyterlab#3869): this plugin sets such a cell's MIME type to C, and
// puts Python back when the %%bpf line goes.
import { INotebookTracker } from '@jupyterlab/notebook';

const BPF_CELL = /^(?:# needs:[^\n]*\n)?%%bpf(?:object)?\b/;
const C = 'text/x-csrc';
const followed = new WeakSet();

function follow(model) {
  if (model.type !== 'code' || followed.has(model)) {
    return;
  }
  followed.add(model);
  let other = model.mimeType === C ? 'text/x-ipython' : model.mimeType;
  const update = () => {
    const bpf = BPF_CELL.test(model.sharedModel.getSource());
    if (bpf && model.mimeType !== C) {
      other = model.mimeType;
      model.mimeType = C;
    } else if (!bpf && model.mimeType === C) {
      model.mimeType = other;
    }
  };
  model.contentChanged.connect(update);
  model.mimeTypeChanged.connect(update); // the notebook resets every cell when the kernel starts
  update();
}

function followAll(notebookModel) {
  if (!notebookModel) {
    return;
  }
  for (const cell of notebookModel.cells) {
    follow(cell);
  }
  notebookModel.cells.changed.connect(() => {
    for (const cell of notebookModel.cells) {
      follow(cell);
    }
  });
}

export default {
  id: 'bpfkit-bpf-highlight:plugin',
  description: 'Highlights %%bpf and %%bpfobject cells as C.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app, tracker) => {
    tracker.widgetAdded.connect((_, panel) => {
      panel.context.ready.then(() => followAll(panel.content.model));
      panel.content.modelChanged.connect(() => followAll(panel.content.model));
    });
  }
};
