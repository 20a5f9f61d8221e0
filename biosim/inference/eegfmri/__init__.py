"""EEG-fMRI preprocessing: clock synchronisation and MR artifact removal."""
