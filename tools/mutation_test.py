"""Mutation testing of the modules where a wrong answer is silent (``docs/developer/mutation_testing.md``).

For each module of :data:`MODULE_TESTS`, a scratch copy of the working tree is made under ``--workdir`` (your
checkout is never modified), ``mutmut`` (the ``[mutation]`` extra) generates its mutants, and each mutant runs
against the tests of that module only (mutmut further restricts each mutant to the tests that execute the
mutated function). The report lists, per module, mutants generated, killed, survived, timed out, not covered
and declared equivalent (``tests/mutation_equivalents.txt``: ``<mutant name> | <mutated line> | <why>``), the
killed share with the equivalents excluded, and every survivor with its diff.

Runs in the background on a 2-core machine (hours for all modules)::

    pip install -e '.[mutation]'
    nohup python -m tools.mutation_test --children 2 --report mutation/report.md > mutation/run.log 2>&1 &
    python -m tools.mutation_test --modules mpt_losses/haar.py      # one module
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# module -> the test files that claim to cover it
MODULE_TESTS: Dict[str, Tuple[str, ...]] = {
    'mpt_arch/region_geometry.py': (
        'tests/arch/test_arch_region_geometry.py', 'tests/arch/test_arch_cswa.py',
        'tests/arch/test_arch_cswa_seam.py', 'tests/arch/test_arch_strips.py', 'tests/deploy/test_authors_compat.py'),
    'mpt_arch/cswa.py': (
        'tests/arch/test_arch_cswa.py', 'tests/arch/test_arch_cswa_seam.py', 'tests/arch/test_arch_strips.py',
        'tests/arch/test_ablation_arch.py', 'tests/deploy/test_authors_compat.py'),
    'mpt_arch/isca.py': (
        'tests/arch/test_arch_blocks.py', 'tests/arch/test_arch_strips.py', 'tests/arch/test_ablation_arch.py',
        'tests/deploy/test_authors_compat.py'),
    'mpt_arch/fefn.py': (
        'tests/arch/test_arch_blocks.py', 'tests/arch/test_arch_strips.py', 'tests/arch/test_ablation_arch.py'),
    'mpt_arch/pyramid_block.py': (
        'tests/arch/test_arch_pyramid_block.py', 'tests/arch/test_arch_blocks.py', 'tests/arch/test_arch_mpt.py',
        'tests/arch/test_ablation_arch.py', 'tests/deploy/test_authors_compat.py'),
    'mpt_arch/authors_compat.py': (
        'tests/arch/test_arch_cswa.py', 'tests/arch/test_arch_pyramid_block.py', 'tests/arch/test_arch_strips.py',
        'tests/deploy/test_authors_compat.py'),
    'mpt_arch/inference/cswa_regions.py': (
        'tests/arch/test_arch_cswa.py', 'tests/arch/test_arch_strips.py', 'tests/deploy/test_authors_compat.py'),
    'mpt_arch/inference/isca_strips.py': ('tests/arch/test_arch_blocks.py', 'tests/arch/test_arch_strips.py'),
    'mpt_arch/inference/fefn_strips.py': ('tests/arch/test_arch_strips.py', 'tests/arch/test_arch_pyramid_block.py'),
    'mpt_arch/inference/sub_block.py': ('tests/arch/test_arch_pyramid_block.py', 'tests/arch/test_arch_strips.py'),
    'mpt_arch/mpt_arch.py': (
        'tests/arch/test_arch_mpt.py', 'tests/arch/test_arch_strips.py', 'tests/arch/test_ablation_arch.py',
        'tests/deploy/test_authors_compat.py', 'tests/arch/test_arch_drop_in_modules.py'),
    'mpt_losses/haar.py': (
        'tests/losses/test_haar.py', 'tests/losses/test_efcr_loss.py', 'tests/losses/test_efcr_gradients.py'),
    'mpt_losses/efcr_loss.py': (
        'tests/losses/test_efcr_loss.py', 'tests/losses/test_efcr_gradients.py'),
    'mpt_losses/reblur.py': (
        'tests/losses/test_efcr_reblur.py',),
    'mpt_models/efcr_model.py': (
        'tests/models/test_model_efcr.py', 'tests/models/test_model_efcr_options.py',
        'tests/models/test_efcr_grad_norms.py'),
    'mpt_data/bbbc006_dataset.py': (
        'tests/data/test_data_bbbc006.py', 'tests/data/test_data_bbbc006_options.py', 'tests/data/test_data_lmdb.py',
        'tests/plugin/test_training_checks.py'),
    'mpt_data/paired_defocus_dataset.py': (
        'tests/data/test_data_paired.py', 'tests/data/test_data_paired_options.py'),
    'mpt_data/normalization.py': (
        'tests/data/test_normalization.py', 'tests/deploy/test_deblur_contract.py',
        'tests/data/test_data_bbbc006.py'),
    # mpt_common/mpt_plugin modules run with the auto-load hook off (see mutmut_env): only tests that need no registry
    'mpt_common/checkpoint.py': (
        'tests/common/test_checkpoint_loading.py',),
    # (the SIGKILL test's subprocesses would see no mutant)
    'mpt_plugin/resume.py': (
        'tests/plugin/test_resume_atomic.py', 'tests/plugin/test_resume_selection.py'),
}
TIMEOUT_MULTIPLIER = 40.0
EQUIVALENTS_FILE = osp.join(ROOT, 'tests', 'mutation_equivalents.txt')
STATUS_RE = re.compile(r'^\s*(\S+__mutmut_\d+): (.+)$')


def read_equivalents(path: str = EQUIVALENTS_FILE) -> Dict[str, Tuple[str, str]]:
    """``{mutant name: (mutated line, reason)}`` from the equivalents file (``#`` comments)."""
    out: Dict[str, Tuple[str, str]] = {}
    if not osp.isfile(path):
        return out
    with open(path, encoding='utf-8') as fin:
        for number, line in enumerate(fin, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            # the mutated line may itself hold ' | ' (bitwise or): name before the first, reason after the last
            name, _, rest = line.partition(' | ')
            mutated, _, reason = rest.rpartition(' | ')
            parts = [name.strip(), mutated.strip(), reason.strip()]
            if not all(parts):
                raise ValueError(f'{path}:{number}: expected "<mutant> | <mutated line> | <reason>", got {line!r}')
            out[parts[0]] = (parts[1], parts[2])
    return out


def copy_tree(dest: str, skip: str = '') -> None:
    """The tracked and untracked-but-not-ignored files of the working tree (but ``skip``), copied to ``dest``."""
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split('\0')
    for rel in filter(lambda f: f and f != skip, files):
        src = osp.join(ROOT, rel)
        if osp.isfile(src):
            os.makedirs(osp.dirname(osp.join(dest, rel)) or dest, exist_ok=True)
            shutil.copy2(src, osp.join(dest, rel))


def mutmut_config(module: str, tests: Sequence[str]) -> str:
    package = module.split('/')[0]
    others = sorted({m.split('/')[0] for m in MODULE_TESTS} | {'mpt_metrics', 'mpt_deploy'} - {package})
    quote = lambda items: ', '.join(f'"{i}"' for i in items)  # noqa: E731
    copied = others + ['options', 'scripts', 'tools', 'docs', 'setup.py', 'README.md', 'mutmut_fastest_first.py']
    return (f'[tool.mutmut]\nsource_paths = ["{package}"]\nonly_mutate = ["{module}"]\n'
            f'also_copy = [{quote(copied)}]\n'
            f'pytest_add_cli_args_test_selection = [{quote(tests)}]\n'
            'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-x", "-p", "mutmut_fastest_first"]\n'
            'process_isolation = "forkserver"\n'
            # mutmut's default (15 x the measured test time) turned equivalent mutants into timeouts, so into
            # kills, whenever the shared 2-core machine was busy; 40 x leaves timeouts to real slow-downs
            f'timeout_multiplier = {TIMEOUT_MULTIPLIER}\n')


def scratch_dir(module: str, workdir: str) -> str:
    return osp.join(workdir, module.replace('/', '__').replace('.py', ''))


def mutmut_env(module: str, dest: str) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', MPT_TEST_THREADS='1', PYTHONPATH=dest)
    if module.startswith(('mpt_plugin/', 'mpt_common/')):
        # the auto-load hook imports mpt_plugin at start-up, before mutmut can put its mutated copy first
        env['MPT_BASICSR_PLUGIN'] = '0'
    return env


def run_module(module: str, workdir: str, children: int) -> dict:
    """Generate and run the mutants of one module in its own scratch copy; returns statuses and diffs."""
    dest = scratch_dir(module, workdir)
    shutil.rmtree(dest, ignore_errors=True)
    copy_tree(dest)
    shutil.copy2(osp.join(ROOT, 'tools', 'mutmut_fastest_first.py'), dest)  # also_copy puts it on mutmut's sys.path
    oracle = osp.realpath(osp.join(ROOT, '..', 'shared'))
    if osp.isdir(oracle):  # the authors' network, found by the tests at <repository>/../shared (here dest/mutants)
        os.symlink(oracle, osp.join(dest, 'shared'))
    with open(osp.join(dest, 'pyproject.toml'), 'w') as fout:
        fout.write(mutmut_config(module, MODULE_TESTS[module]))
    start = time.time()
    with open(osp.join(dest, 'mutmut_run.log'), 'w') as log:
        code = subprocess.run([sys.executable, '-m', 'mutmut', 'run', '--max-children', str(children)], cwd=dest,
                              env=mutmut_env(module, dest), stdout=log, stderr=subprocess.STDOUT).returncode
    with open(osp.join(dest, 'mutmut_minutes.txt'), 'w') as fout:
        fout.write(f'{(time.time() - start) / 60:.2f} {code}\n')
    return collect_module(module, workdir)


def rerun_module(module: str, workdir: str, children: int) -> dict:
    """Re-test the mutants of an earlier run that were neither killed nor declared equivalent, against the working
    tree's current tests and code.

    The scratch copy and mutmut's ``mutants/`` tree are refreshed from the working tree (but the mutated module)
    and mutmut collects again which tests execute which function (an edited test, or a new caller, may reach
    functions it did not reach before); the mutated module itself must be unchanged since that run (otherwise run
    the module afresh).
    """
    dest = scratch_dir(module, workdir)
    minutes, code, statuses = finished_run(module, dest)
    with open(osp.join(ROOT, module), 'rb') as now, open(osp.join(dest, module), 'rb') as then:
        if now.read() != then.read():
            raise SystemExit(f'{module} changed since its run in {dest}; run it afresh (without --rerun).')
    for target in (dest, osp.join(dest, 'mutants')):
        shutil.rmtree(osp.join(target, 'tests'), ignore_errors=True)  # deleted tests go too
        copy_tree(target, skip=module)
    declared = read_equivalents()  # their line is unchanged, since the module is: no need to run them again
    names = [name for name, status in statuses.items() if status != 'killed' and name not in declared]
    stats = osp.join(dest, 'mutants', 'mutmut-stats.json')
    if osp.isfile(stats):  # which tests run which function: edited tests may reach new functions
        os.remove(stats)
    start = time.time()
    if names:
        with open(osp.join(dest, 'mutmut_rerun.log'), 'w') as log:
            subprocess.run([sys.executable, '-m', 'mutmut', 'run', '--max-children', str(children), *names],
                           cwd=dest, env=mutmut_env(module, dest), stdout=log, stderr=subprocess.STDOUT)
    with open(osp.join(dest, 'mutmut_minutes.txt'), 'w') as fout:
        fout.write(f'{minutes + (time.time() - start) / 60:.2f} {code}\n')
    return collect_module(module, workdir)


def finished_run(module: str, dest: str) -> Tuple[float, int, Dict[str, str]]:
    """Minutes, mutmut exit code and ``{mutant: status}`` of a module's finished scratch copy."""
    if not osp.isfile(osp.join(dest, 'mutmut_minutes.txt')):
        raise SystemExit(f'{module}: no finished run in {dest}; run it without --report-only first.')
    with open(osp.join(dest, 'mutmut_minutes.txt')) as fin:
        minutes, code = fin.read().split()
    listing = subprocess.run([sys.executable, '-m', 'mutmut', 'results', '--all', 'true'], cwd=dest,
                             env=mutmut_env(module, dest), capture_output=True, text=True).stdout
    statuses = {m.group(1): m.group(2).strip() for m in map(STATUS_RE.match, listing.splitlines()) if m}
    return float(minutes), int(code), statuses


def collect_module(module: str, workdir: str) -> dict:
    """Statuses and survivor diffs of a module's finished scratch copy (``mutmut results``/``show``)."""
    dest = scratch_dir(module, workdir)
    minutes, code, statuses = finished_run(module, dest)
    env = mutmut_env(module, dest)
    diffs = {}
    for name, status in statuses.items():
        if status in ('survived', 'no tests', 'suspicious'):  # the report shows these diffs
            diffs[name] = subprocess.run([sys.executable, '-m', 'mutmut', 'show', name], cwd=dest, env=env,
                                         capture_output=True, text=True).stdout
    return {'module': module, 'tests': MODULE_TESTS[module], 'statuses': statuses, 'diffs': diffs,
            'exit': code, 'minutes': minutes}


def mutated_line(diff: str) -> str:
    return next((line[1:].strip() for line in diff.splitlines() if line.startswith('+') and
                 not line.startswith('+++')), '')


def summarise(result: dict, equivalents: Dict[str, Tuple[str, str]]) -> dict:
    """Counts of one module; an equivalence only counts while its recorded mutated line is still the mutant's."""
    counts = {'generated': len(result['statuses']), 'killed': 0, 'survived': 0, 'equivalent': 0, 'timeout': 0,
              'no tests': 0, 'not run': 0, 'other': 0}
    survivors = []
    for name, status in sorted(result['statuses'].items()):
        if status == 'killed':
            counts['killed'] += 1
        elif status == 'survived':
            eq = equivalents.get(name)
            if eq and eq[0] == mutated_line(result['diffs'].get(name, '')):
                counts['equivalent'] += 1
            else:
                counts['survived'] += 1
                survivors.append(name)
        elif status == 'timeout':
            counts['killed'] += 1  # the tests noticed (a hang is a failure)
            counts['timeout'] += 1
        elif status == 'no tests':
            counts['no tests'] += 1
            survivors.append(name)
        elif status == 'not checked':  # an interrupted run: left out of the killed share
            counts['not run'] += 1
        else:
            counts['other'] += 1
    scored = counts['generated'] - counts['equivalent'] - counts['other'] - counts['not run']
    counts['killed %'] = 100.0 * counts['killed'] / scored if scored else float('nan')
    return {'counts': counts, 'survivors': survivors}


def report(results: List[dict], equivalents: Dict[str, Tuple[str, str]]) -> str:
    head = ['module', 'generated', 'killed', 'survived', 'equivalent', 'timeout', 'no tests', 'not run', 'other',
            'killed %', 'minutes']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    details = []
    total = dict.fromkeys(head[1:9], 0)
    for result in results:
        summary = summarise(result, equivalents)
        c = summary['counts']
        for key in total:
            total[key] += c[key]
        lines.append(f"| `{result['module']}` | " + ' | '.join(str(c[k]) for k in head[1:9]) +
                     f" | {c['killed %']:.1f} | {result['minutes']:.0f} |")
        for name in summary['survivors']:
            diff = result['diffs'].get(name, '')
            details.append(f"### `{name}` ({result['statuses'][name]})\n\n```diff\n{diff}\n```")
    scored = total['generated'] - total['equivalent'] - total['other'] - total['not run']
    lines.append('| **all** | ' + ' | '.join(str(total[k]) for k in head[1:9]) +
                 f" | {100.0 * total['killed'] / scored if scored else float('nan'):.1f} | |")
    eq_lines = [f'- `{name}`: {reason}' for name, (_, reason) in sorted(equivalents.items())]
    return '\n'.join(['# Mutation testing report', '', f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, '
                      f'`python -m tools.mutation_test {" ".join(sys.argv[1:])}`', '', *lines, '',
                      '## Declared equivalent', '', *(eq_lines or ['(none)']), '', '## Survivors', '',
                      *(details or ['(none)'])]) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--modules', nargs='+', default=list(MODULE_TESTS), choices=list(MODULE_TESTS))
    parser.add_argument('--jobs', type=int, default=1, help='modules run at once')
    parser.add_argument('--children', type=int, default=1, help='mutmut workers per module')
    parser.add_argument('--workdir', default=osp.join(ROOT, 'mutation', 'work'), help='scratch copies go here')
    parser.add_argument('--report', default=osp.join(ROOT, 'mutation', 'report.md'))
    parser.add_argument('--rerun', action='store_true',
                        help="re-test an earlier run's surviving mutants against the current tests")
    parser.add_argument('--report-only', action='store_true',
                        help='write the report from the scratch copies of earlier runs, running nothing')
    args = parser.parse_args(argv)
    if shutil.which('git') is None:
        raise SystemExit('mutation_test.py needs git (to copy the working tree).')
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is missing: pip install -e '.[mutation]'") from None
    equivalents = read_equivalents()
    os.makedirs(args.workdir, exist_ok=True)
    if args.report_only:
        results = [collect_module(m, args.workdir) for m in args.modules]
    else:
        run = rerun_module if args.rerun else run_module
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda m: run(m, args.workdir, args.children), args.modules))
    text = report(results, equivalents)
    os.makedirs(osp.dirname(osp.abspath(args.report)), exist_ok=True)
    with open(args.report, 'w', encoding='utf-8') as fout:
        fout.write(text)
    print(text.split('## Declared')[0])
    print(f'report written to {args.report}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
