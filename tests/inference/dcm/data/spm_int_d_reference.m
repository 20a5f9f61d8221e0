% Reference values for biosim's "spm_d" DCM integrator (tests/inference/dcm/
% test_dcm_spm_int_d.py): SPM's spm_int_D and spm_soreduce on a small
% nonlinear (D) one-state DCM, run under Octave with SPM on the path:
%   octave --no-gui --eval "addpath('/work/spm25'); run('spm_int_d_reference.m')"
% writes spm_int_d_reference.json next to this script.
% Octave has no fcnchk (used by spm_int_D and spm_soreduce): a stand-in
tmp = tempname(); mkdir(tmp);
fid = fopen(fullfile(tmp, 'fcnchk.m'), 'w');
fprintf(fid, 'function f = fcnchk(f, varargin)\n');
fprintf(fid, 'if ischar(f), if exist(f) >= 2, f = str2func(f); else, f = inline(f, varargin{:}); end, end\n');
fclose(fid); addpath(tmp);
n = 2; m = 1; tr = 2; nm = 4; v = 12;
P.A = [-0.2 -0.1; 0.4 0.1];          % diagonal: log self-inhibition scales
P.B = zeros(n, n, m);
P.C = [1.2; 0];
P.D = zeros(n, n, n);
P.D(2, 1, 2) = 0.6;                   % region 2 gates 1 -> 2
P.D(1, 2, 1) = -0.3;                  % region 1 gates 2 -> 1
P.transit = [0.05; -0.04];
P.decay = 0.03;
P.epsilon = 0.1;
U.dt = tr / nm;
t = (0:v * nm - 1)' * U.dt;
U.u = double(mod(t, 7) < 3) + 0.5 * double(mod(t, 11) < 2);
M.f = 'spm_fx_fmri'; M.g = 'spm_gx_fmri';
M.x = zeros(n, 5); M.n = 5 * n; M.l = n; M.m = m; M.ns = v;
M.delays = [1.0; 0.5];
M.nsteps = round(max(tr, 1)); M.states = 1:n;
y = spm_int_D(P, M, U);
[M0, M1, M2] = spm_soreduce(M, P);
M2all = zeros(5 * n, 5 * n + 1, 5 * n + 1);
for k = 1:5 * n, M2all(k, :, :) = full(M2{k}); end
r.y = y; r.u = U.u; r.M0 = full(M0); r.M1 = full(M1{1}); r.M2 = M2all;
r.A = P.A; r.C = P.C; r.D = P.D; r.transit = P.transit; r.decay = P.decay;
r.epsilon = P.epsilon; r.tr = tr; r.nm = nm; r.delays = M.delays;
r.note = 'SPM spm_int_D / spm_soreduce under Octave; M2(k,:,:) = M2{k}';
fid = fopen(fullfile(fileparts(mfilename('fullpath')), 'spm_int_d_reference.json'), 'w');
fprintf(fid, '%s', jsonencode(r, 'PrettyPrint', false));
fclose(fid);
